"""``python -m levalign``: the command line (see :mod:`levalign.cli`)."""

from levalign.cli import main

main()
