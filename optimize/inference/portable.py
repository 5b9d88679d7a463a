"""A `.keras` file that plain Keras loads: the saved model without its compile config.

A compiled model's file names its loss and metrics, which are this project's (``microbead>...``). Keras
(3.15) resolves such names only from its registry, filled when `losses` is imported; it never imports a
module outside Keras itself. So ``keras.models.load_model(file)`` in a process that imported only Keras
fails on a compiled model's file, although the architecture and weights use only Keras' own layers. The
copy written here drops the compile config (``config.json``'s ``compile_config`` becomes null) and keeps
every other byte of the archive, so it loads anywhere Keras is installed and predicts exactly what the
original predicts; load the original with `optimize.inference.load_model` to get the loss and metrics back.

Keras-free (zip and JSON only), so read-only commands such as `export-best` can write it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

CONFIG_ENTRY = "config.json"


def write_portable_model(source: str | Path, destination: str | Path) -> str:
    """Copy the `.keras` file `source` to `destination` without its compile config; return the copy's sha256.

    Raises ValueError when `source` is not a `.keras` archive with a ``config.json``.
    """
    source, destination = Path(source), Path(destination)
    try:
        with zipfile.ZipFile(source) as archive:
            if CONFIG_ENTRY not in archive.namelist():
                raise ValueError(f"{source} has no {CONFIG_ENTRY}; expected a .keras file saved by Keras 3")
            entries = [(info, archive.read(info)) for info in archive.infolist()]
    except zipfile.BadZipFile as error:
        raise ValueError(f"{source} is not a .keras file (not a zip archive: {error})") from None
    handle, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w") as copy:
            for info, data in entries:
                if info.filename == CONFIG_ENTRY:
                    config = json.loads(data)
                    config["compile_config"] = None
                    data = json.dumps(config).encode("utf-8")
                copy.writestr(info, data)
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return file_sha256(destination)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
