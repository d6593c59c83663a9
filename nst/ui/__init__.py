"""What a person drives: the command line (`cli`, its options in `options`,
how it fails in `failure`) and the notebook studio (`studio`, its `controls`
and live `preview`)."""

from nst.base import submodules

__getattr__ = submodules(__name__)
