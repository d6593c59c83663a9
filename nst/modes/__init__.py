"""What is made of many runs: clips (`video`), many pictures into a folder
(`batch`), on a Ray cluster (`cluster`), and the report's and the paper's
figures (`figures`)."""

from nst.base import submodules

__getattr__ = submodules(__name__)
