"""CLI sub-commands; each module exposes `register(subparsers)` (see l2fast/cli.py)."""
