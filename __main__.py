"""``python -m tilewise``: the headless command line."""

import sys

from tilewise.core.cli import main

sys.exit(main())
