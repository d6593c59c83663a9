# The two set-up commands of the README:
#   make demo   venv + install, then a style transfer of the sample images -> out/demo.png
#   make test   venv + install, then the test suite
# and:
#   make studio                    the studio notebook as a web app (Voila), http://localhost:8866
#   make repository REPO=owner/name  point the Colab badges and install cells at a GitHub repository
#   make docs                      the docs site into site/ (mkdocs build --strict); make docs-serve serves it
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED := ../shared
EIGHTBIT := $(SHARED)/weights/vgg19_imagenet_8bit.npz

# Beside a checkout that has ../shared (this project's offline development
# machines), use its images and its 8-bit file of all 16 convolutions of the
# real ImageNet VGG19, so the demo and the studio run the paper's layers (the
# report preset); elsewhere the samples are downloaded and Keras downloads
# the full ImageNet weights.
ifneq ($(wildcard $(SHARED)/images),)
export NST_IMAGES ?= $(abspath $(SHARED)/images)
endif
ifeq ($(origin NST_VGG19_WEIGHTS)$(wildcard $(EIGHTBIT)),undefined$(EIGHTBIT))
demo studio: export NST_VGG19_WEIGHTS := $(abspath $(EIGHTBIT))
endif
# The studio saves into out/ rather than beside the notebook.
studio: export NST_OUTPUT_DIR ?= $(abspath out)
REPOSITORY := $(shell sed -n 's/^REPOSITORY = "\(.*\)"/\1/p' nst/__init__.py)
DEMO_SIZE ?= 256
DEMO_STEPS ?= 300

.PHONY: demo test studio repository docs docs-serve
# The main job needs the runtime only; the tests add their tools (pytest,
# Jupyter, Voila, Playwright, Hypothesis, grimp and Colab's ipywidgets 7.7);
# the studio adds Voila and a Jupyter kernel.
$(VENV)/.runtime: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# The clone's own folder is often named nst: setuptools' default editable
	# finder loses to it when Python runs in the folder above (it sees a
	# namespace package without __version__); 'compat' puts the clone on
	# sys.path, where the real package wins.
	$(PY) -m pip install -q --no-deps -e . --config-settings editable_mode=compat
	touch $@

$(VENV)/.installed: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	# Colab's ipywidgets 7.7 in a folder of its own: tests/test_widgets7.py
	# runs the studio's tests with it ahead of the venv's ipywidgets 8.
	$(PY) -m pip install -q --no-deps --target $(VENV)/ipywidgets7 "ipywidgets>=7.7,<7.8" ipython_genutils \
		"widgetsnbextension>=3.6,<4" "jupyterlab_widgets>=1.1,<2"
	touch $@

# The docs site's tools (requirements-docs.txt); nothing else needs them.
$(VENV)/.docs: $(VENV)/.runtime requirements-docs.txt
	$(PY) -m pip install -q -r requirements-docs.txt
	touch $@

$(VENV)/.studio: $(VENV)/.runtime
	$(PY) -m pip install -q $$(grep -E '^(voila|ipykernel)' requirements-dev.txt)
	touch $@

demo: $(VENV)/.runtime
	$(VENV)/bin/nst --demo -o out/demo.png --size $(DEMO_SIZE) --steps $(DEMO_STEPS) $(DEMO_ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -q

# notebooks/voila.json: a kernel whose page has closed (or that no page ever
# connected to) ends after 10 idle minutes, so closed tabs free their memory.
studio: $(VENV)/.studio
	mkdir -p $(NST_OUTPUT_DIR)
	$(VENV)/bin/voila notebooks/studio.ipynb --Voila.config_file_paths=notebooks

# --strict: a broken link or anchor, a page left out of the nav, or an API
# reference that does not resolve fails the build. (NO_MKDOCS_2_WARNING
# quiets Material's notice about its successor.)
docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

repository:
	@test -n "$(REPO)" || { echo "usage: make repository REPO=owner/name"; exit 2; }
	sed -i 's|$(REPOSITORY)|$(REPO)|g' README.md nst/__init__.py notebooks/*.ipynb docs/*.md mkdocs.yml
