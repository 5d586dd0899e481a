"""`python -m mobilecodec` (also what `torchrun -m mobilecodec` runs)."""

from mobilecodec.cli import entry

entry()
