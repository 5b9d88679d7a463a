"""`python -m optimize`: the same as the `optimize` command.

`python -m` puts the working directory first on `sys.path`, where a user's own `data/`, `models/` or
`losses/` folder (images, saved models) would shadow this project's packages of those names. The
`optimize` command never looks there, so neither does this.
"""

import os
import sys


def drop_working_directory(path: list[str]) -> None:
    """Remove the working directory (as '' or as its full path) from an import path, in place, unless it is
    this project's own checkout, whose `data/`, `models/` and `losses/` are the packages."""
    here = os.path.realpath(os.getcwd())
    checkout = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    if here != checkout:
        path[:] = [entry for entry in path if os.path.realpath(entry or os.curdir) != here]


drop_working_directory(sys.path)

from optimize.cli import main  # noqa: E402

sys.exit(main())
