"""The algorithm: the VGG19 extractor (`features`, `normalize`), the losses
(`losses`, `wasserstein`) and the objective on a whole image or tile by tile
(`problem`, `tiles`), the targets (`targets`), compiled steps kept per shape
(`engine`), the optimisers (`optimizers`, `moments`), a job's inputs at each
scale (`scene`), the device (`device`) and the fastest way to execute a step
here, measured (`execution`)."""

from nst.base import submodules

__getattr__ = submodules(__name__)
