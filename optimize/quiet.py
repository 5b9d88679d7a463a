"""Importing a library that prints start-up noise (TensorFlow's C++ lines) without burying a one-line error."""

from __future__ import annotations

import importlib
import os
import sys
import tempfile


def import_quietly(module: str) -> None:
    """Import `module` with the process's stderr (file descriptor 2) held in a temporary file.

    Importing TensorFlow prints start-up lines from C++ (oneDNN on AVX-512 CPUs, CPU features)
    before any log level applies; they would bury a one-line error. Replayed if the import fails
    (not when it is interrupted: a signal then ends the command with one line).
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            importlib.import_module(module)
        except Exception as error:
            os.dup2(saved, 2)
            stop = stop_signal_behind(error)
            if stop is not None:
                raise stop from None
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def stop_signal_behind(error: BaseException) -> KeyboardInterrupt | None:
    """The stop signal that a library turned into another error while importing (Keras reports an interrupted
    `import optree` as "you need to have `optree` installed"); None when no signal is behind `error`."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None
