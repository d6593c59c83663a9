"""``python -m nst``: the command line."""

from nst.ui.cli import console

console()
