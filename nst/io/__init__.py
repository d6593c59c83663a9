"""What comes in and goes out: images, clips and masks read and checked,
PNGs written with their record (`images`, `clips`, `regions`), the VGG19
weights chosen and checked (`weights`), colour and optical flow (`color`,
`flow`), and `Job`, a run described as plain data (`jobs`). No run happens
here, and only `regions` needs TensorFlow."""

from nst.base import submodules

__getattr__ = submodules(__name__)
