# The two set-up commands of the README:
#   make demo   venv + install, then a style transfer of the sample images -> out/demo.png
#   make test   venv + install, then the test suite
# and:
#   make studio                    the studio notebook as a web app (Voila), http://localhost:8866
#   make repository REPO=owner/name  point the Colab badges and install cells at a GitHub repository
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED := ../shared
BLOCK13 := $(SHARED)/weights/vgg19_imagenet_block1_to_block3.npz

# Beside a checkout that has ../shared (this project's offline development
# machines), use its images and its real block 1-3 weights; elsewhere the
# samples are downloaded and Keras downloads the full ImageNet weights.
ifneq ($(wildcard $(SHARED)/images),)
export NST_IMAGES ?= $(abspath $(SHARED)/images)
endif
ifeq ($(origin NST_VGG19_WEIGHTS)$(wildcard $(BLOCK13)),undefined$(BLOCK13))
DEMO_ARGS ?= --preset blocks1-3 --weights $(BLOCK13)
endif
REPOSITORY := $(shell sed -n 's/^REPOSITORY = "\(.*\)"/\1/p' nst/__init__.py)
DEMO_SIZE ?= 256
DEMO_STEPS ?= 200

.PHONY: demo test studio repository
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/nst --demo -o out/demo.png --size $(DEMO_SIZE) --steps $(DEMO_STEPS) $(DEMO_ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -q

studio: $(VENV)/.installed
	$(VENV)/bin/voila notebooks/studio.ipynb

repository:
	@test -n "$(REPO)" || { echo "usage: make repository REPO=owner/name"; exit 2; }
	sed -i 's|$(REPOSITORY)|$(REPO)|g' README.md nst/__init__.py notebooks/*.ipynb
