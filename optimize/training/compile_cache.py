"""Compiled training steps kept on disk, so later trials and other workers skip XLA's work.

Every trial builds a new model, so the JAX backend traces and compiles its training step again,
and on a GPU XLA also autotunes every convolution. Trials of the same architecture, batch and
precision share those convolutions, and identical configurations share the whole program. JAX's
persistent compilation cache (with XLA's per-fusion autotune cache inside it) keeps both on disk,
keyed by the program, the device and the versions; a cache shared by all workers on a file system
is safe. The TensorFlow backend is left as it is.

Every program is kept, however fast it compiled (JAX's default keeps only those over a second): building
a model compiles the random initializer of each weight shape, a fraction of a second each but seconds in
all for a new process (a depth-4 U-Net: 5.9 s on a CPU, about 9 s on an H100), and a warm cache serves them.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from optimize.errors import UserError
from optimize.folders import studies_dir

COMPILE_CACHE_ENV = "OPTIMIZE_COMPILE_CACHE"
DISABLED = "off"


def resolve_cache_dir(option: str | None) -> Path | None:
    """`--compile-cache`, else `$OPTIMIZE_COMPILE_CACHE`, else `studies/.compile_cache`; `off` disables."""
    value = option or os.environ.get(COMPILE_CACHE_ENV) or str(studies_dir() / ".compile_cache")
    return None if value == DISABLED else Path(value).resolve()


def enable_compile_cache(directory: Path | None, backend: str | None = None) -> Path | None:
    """Turn the cache on for this process; returns the folder in use, or None (off, or not JAX)."""
    if directory is None or (backend or keras.backend.backend()) != "jax":
        return None
    import jax

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"compile cache {directory}: cannot create the folder ({error.strerror}); "
            f"give a writable folder with --compile-cache or ${COMPILE_CACHE_ENV}, or 'off'"
        ) from None
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_enable_xla_caches", "xla_gpu_per_fusion_autotune_cache_dir")
    return directory
