"""`python -m l2fast` runs the command-line interface."""

from l2fast.cli import main

raise SystemExit(main())
