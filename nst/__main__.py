"""``python -m nst``: the command line."""

from nst.cli import main

raise SystemExit(main())
