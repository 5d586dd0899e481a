"""`python -m mobilecodec` (also what `torchrun -m mobilecodec` runs)."""

import sys

from mobilecodec.cli import main

sys.exit(main())
