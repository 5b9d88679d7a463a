"""Where the project keeps its files: the studies folder, and output folders created or refused in one line."""

from __future__ import annotations

import os
from pathlib import Path

from optimize.errors import UsageError

STUDIES_DIR_ENV = "OPTIMIZE_STUDIES_DIR"


def studies_dir() -> Path:
    """Folder holding `NAME.toml` configs and, by default, the SQLite databases and outputs."""
    return Path(os.environ.get(STUDIES_DIR_ENV, "studies")).resolve()


def make_output_folder(path: Path) -> Path:
    """Create `path` (and its parents) for writing; a `UsageError` names it when it cannot be used.

    Checked before anything is written: a regular file where the folder or one above it must be, a
    folder that cannot be created or is not writable.
    """
    blocker = file_in_the_way(path)
    if blocker is not None:
        what = "is a file" if blocker == path else f"is under {blocker}, which is a file"
        raise UsageError(f"output folder {path} {what}, not a folder; pass --out with a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"output folder {path}: cannot create it ({error.strerror}); pass --out elsewhere") from None
    if not os.access(path, os.W_OK):
        raise UsageError(f"output folder {path} is not writable; pass --out elsewhere")
    return path


def file_in_the_way(folder: Path) -> Path | None:
    """The regular file standing where `folder` or the nearest existing folder above it must be, if any."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None
