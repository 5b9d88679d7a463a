"""The JAX compile cache: where it lives, that `optimize run` passes it to workers, and that JAX really writes it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from optimize.errors import UserError
from optimize.search.settings import XLA_DEFAULT_LEVEL
from optimize.training.compile_cache import enable_compile_cache, resolve_cache_dir
from optimize.workers.worker import RunOptions

ROOT = Path(__file__).resolve().parent.parent


def test_option_then_environment_then_studies_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(tmp_path / "studies"))
    monkeypatch.delenv("OPTIMIZE_COMPILE_CACHE", raising=False)
    assert resolve_cache_dir(None) == tmp_path / "studies" / ".compile_cache"
    monkeypatch.setenv("OPTIMIZE_COMPILE_CACHE", str(tmp_path / "shared"))
    assert resolve_cache_dir(None) == tmp_path / "shared"
    assert resolve_cache_dir(str(tmp_path / "mine")) == tmp_path / "mine"
    assert resolve_cache_dir("off") is None
    monkeypatch.setenv("OPTIMIZE_COMPILE_CACHE", "off")
    assert resolve_cache_dir(None) is None


def test_other_backends_and_off_leave_everything_alone(tmp_path):
    assert enable_compile_cache(tmp_path / "cache", backend="tensorflow") is None
    assert enable_compile_cache(None, backend="jax") is None
    assert not (tmp_path / "cache").exists()


def test_an_unusable_folder_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(UserError, match=r"compile cache .*file/cache: cannot create the folder"):
        enable_compile_cache(tmp_path / "file" / "cache", backend="jax")


def test_workers_get_the_cache_option():
    options = RunOptions(study="demo", compile_cache="/scratch/cache")
    args = options.worker_args()
    assert args[args.index("--compile-cache") + 1] == "/scratch/cache"
    assert "--compile-cache" not in RunOptions(study="demo").worker_args()


CACHE_HITS_SCRIPT = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
sys.path.insert(0, {root!r})
from pathlib import Path
import jax, jax.numpy as jnp
from jax._src import monitoring
from optimize.training.autotune import apply_autotune_level
from optimize.training.compile_cache import enable_compile_cache

apply_autotune_level(int(sys.argv[2]))
enable_compile_cache(Path(sys.argv[1]))
hits = []
monitoring.register_event_listener(
    lambda event, **kwargs: hits.append(event) if event == "/jax/compilation_cache/cache_hits" else None
)
if sys.argv[3] == "model":
    import models

    models.build("unet", input_shape=(32, 32, 1), base_filters=4, depth=2)
else:
    jax.jit(lambda x: jnp.tanh(x @ x.T).sum())(jnp.ones((64, 64))).block_until_ready()
print("hits", len(hits))
"""


def cache_hits_in_a_new_process(
    cache: Path, autotune_level: int = XLA_DEFAULT_LEVEL, compiles: str = "function"
) -> int:
    """How often a fresh process finds its programs in the compile cache `cache`: one small jitted function
    (it compiles in milliseconds), or the weight initializers of a tiny U-Net (`compiles="model"`)."""
    script = CACHE_HITS_SCRIPT.format(root=str(ROOT))
    output = subprocess.run(
        [sys.executable, "-c", script, str(cache), str(autotune_level), compiles],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert output.returncode == 0, output.stderr[-2000:]
    return int(output.stdout.split("hits")[-1])


def test_a_second_process_loads_the_compiled_program_from_the_cache(tmp_path):
    """Two fresh processes compile the same jitted function; the second one hits the cache on disk, though
    the function compiles in far less than the second that JAX's cache asks for by default."""
    cache = tmp_path / "cache"
    first, second = (cache_hits_in_a_new_process(cache) for _ in range(2))
    assert first == 0 and second >= 1
    assert any(cache.iterdir())


def test_a_new_process_building_a_model_loads_its_weight_initializers_from_the_cache(tmp_path):
    """Building a model compiles one initializer per weight shape (seconds in all for a real U-Net); a second
    process building the same model finds every one of them on disk."""
    cache = tmp_path / "cache"
    first, second = (cache_hits_in_a_new_process(cache, compiles="model") for _ in range(2))
    assert first == 0
    assert second >= 3, second
