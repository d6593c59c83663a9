"""``python -m nst``: the command line."""

from nst.cli import console

console()
