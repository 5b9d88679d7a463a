"""How a command that trains imports Keras: quietly, without packages it never uses here, and on which backend.

Importing Keras loads, when they are installed, scikit-learn (its estimator wrappers), matplotlib (image
galleries), pandas (DataFrame inputs) and, under TensorFlow, JAX (through `tf.lite`). This project installs
them for its own uses (Optuna's importances, reports, the JAX backend), and none of its Keras calls
needs them; without them Keras loads in 60 % of the CPU time and 70 % of the memory
(bench/RESULTS.md, "Keras' start-up").
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from optimize.errors import UsageError
from optimize.stop_signals import raise_if_stopped, stop_behind

UNUSED_BY_OUR_KERAS = ("sklearn", "matplotlib", "pandas")
BACKENDS = ("tensorflow", "jax")


def keras_backend() -> str:
    """The backend Keras will use: `$KERAS_BACKEND`, else `~/.keras/keras.json` (`$KERAS_HOME`), else tensorflow.

    `UsageError` for one this project does not train with (`BACKENDS`): Keras itself fails on a misspelt one
    with a traceback, and on `torch` or `numpy` only later."""
    backend = os.environ.get("KERAS_BACKEND")
    source = f"KERAS_BACKEND={backend!r}"
    if not backend:
        home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
        source = f"{home / 'keras.json'}: backend"
        try:
            backend = str(json.loads((home / "keras.json").read_text(encoding="utf-8")).get("backend", "tensorflow"))
        except (OSError, ValueError, AttributeError):
            return "tensorflow"
    if backend not in BACKENDS:
        raise UsageError(f"{source}: expected {' or '.join(BACKENDS)}, the Keras backends this project trains with")
    return backend


def import_keras(*, quiet: bool = True) -> None:
    """Import Keras (quietly unless `quiet` is false) with the packages above hidden from it; a no-op when
    Keras is already loaded. Hidden only during the import: anything may import them afterwards.

    A stop signal that a library swallowed while Keras loaded is raised again here.
    """
    if "keras" in sys.modules:
        return
    unused = (*UNUSED_BY_OUR_KERAS, "jax") if keras_backend() != "jax" else UNUSED_BY_OUR_KERAS
    with hidden(unused):
        if quiet:
            import_quietly("keras")
        else:
            importlib.import_module("keras")
    raise_if_stopped()


@contextmanager
def hidden(modules: tuple[str, ...]) -> Iterator[None]:
    """Within the block, importing one of `modules` that is not loaded yet fails as if it were not installed."""
    names = [name for name in modules if name not in sys.modules]
    for name in names:
        sys.modules[name] = None  # `import name` now raises ModuleNotFoundError
    try:
        yield
    finally:
        for name in names:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


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
            stop = stop_behind(error)
            if stop is not None:
                raise stop from None
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
