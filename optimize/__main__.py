"""`python -m optimize`: the same as the `optimize` command."""

import sys

from optimize.cli import main

sys.exit(main())
