"""XLA's autotuning level for this process: how hard XLA searches for fast GPU kernels.

On a GPU, XLA times the candidate algorithms of every convolution and matrix product of a new program,
and at its default level (4) also checks their results against each other. That is part of the 73–77 s
a new worker spent compiling on an H100 (bench/RESULTS.md). A lower level compiles sooner and may pick
slower kernels: 0 turns autotuning off, 1 times the candidates only, 2 and 3 add buffer initialisation,
4 adds the check. XLA reads the level from `$XLA_FLAGS` once per process, when the backend starts, so it is
the study's `[training] xla_autotune_level`, one value per worker, never searched. JAX's compile cache
keys programs by `$XLA_FLAGS` too, so `optimize warm-cache` must run with the workers' level. On a CPU
the level changes nothing.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import MutableMapping

from optimize.errors import UserError
from optimize.search.settings import XLA_DEFAULT_LEVEL

XLA_FLAGS_ENV = "XLA_FLAGS"
AUTOTUNE_FLAG = "--xla_gpu_autotune_level"
_FLAG_PATTERN = re.compile(re.escape(AUTOTUNE_FLAG) + r"=(\S*)")


def flagged_level(xla_flags: str) -> str | None:
    """The autotune level `xla_flags` sets (the last one, as XLA reads them), or None."""
    values = _FLAG_PATTERN.findall(xla_flags)
    return values[-1] if values else None


def apply_autotune_level(level: int, environ: MutableMapping[str, str] | None = None) -> str | None:
    """Put `level` into `$XLA_FLAGS` for this process and its children; a line saying so, or None for XLA's default.

    A level already in `$XLA_FLAGS` that differs from the study's is an error: either could be what the
    user meant. The default level adds nothing, so an untouched setting leaves `$XLA_FLAGS` as it was.
    """
    environ = os.environ if environ is None else environ
    flags = environ.get(XLA_FLAGS_ENV, "")
    current = flagged_level(flags)
    if current is not None:
        if current != str(level):
            raise UserError(
                f"${XLA_FLAGS_ENV} sets {AUTOTUNE_FLAG}={current} but the study's [training] "
                f"xla_autotune_level is {level}; keep one of them"
            )
        return None if level == XLA_DEFAULT_LEVEL else f"XLA autotune level {level} (${XLA_FLAGS_ENV})"
    if level == XLA_DEFAULT_LEVEL:
        return None
    if _jax_started():
        raise RuntimeError(f"xla_autotune_level {level} must be set before JAX starts its backend")
    environ[XLA_FLAGS_ENV] = f"{flags} {AUTOTUNE_FLAG}={level}".strip()
    return f"XLA autotune level {level} (xla_autotune_level; ${XLA_FLAGS_ENV} = {environ[XLA_FLAGS_ENV]})"


def _jax_started() -> bool:
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()
