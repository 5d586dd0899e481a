"""What the scripts share: the checkout on the import path, and `run_main` (a script's `main` run as
a command is: the project's errors on one line, exit code 2)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from mobilecodec.cli.common import run_script as run_main  # noqa: E402,F401 (after the path)
