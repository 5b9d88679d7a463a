"""`optimize warm-cache`: the study's distinct programs, compiled once into JAX's compile cache."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from optimize.search.config import load_config
from optimize.workers.warm_cache import PROGRAM_SETTINGS, distinct_programs, program_settings
from tests.conftest import OPTIMIZE, write_tiny_study

SEARCH = """[search]
architecture = ["unet", "attention_unet"]
batch_size = [4, 8]
loss = ["dice", "combined"]
learning_rate = { low = 1e-5, high = 1e-2, log = true }
"""


def compiled_study(studies: Path, search: str = SEARCH) -> Path:
    """The tiny study, compiled (not eager, XLA on), searching two architectures × two batch sizes."""
    path = write_tiny_study(studies)
    text = path.read_text().replace("run_eagerly = true", "jit_compile = true").replace("batch_size = 8\n", "")
    head, _, rest = text.partition("[search]")
    path.write_text(head + search + rest[rest.index("[sampler]") :])
    return path


def run_optimize(studies: Path, *args: str, backend: str = "tensorflow") -> subprocess.CompletedProcess:
    env = {**os.environ, "OPTIMIZE_STUDIES_DIR": str(studies), "KERAS_BACKEND": backend}
    return subprocess.run([OPTIMIZE, *args], capture_output=True, text=True, env=env, timeout=600)


def test_programs_are_the_products_of_the_program_settings_only(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(tmp_path))
    ranged = SEARCH + "gradient_accumulation_steps = { low = 1, high = 2 }\n"
    config = load_config(str(compiled_study(tmp_path, ranged)))

    combinations, ranges = program_settings(config)
    programs, _ = distinct_programs(config, (32, 32, 1))

    assert ranges == ["gradient_accumulation_steps"]
    assert sorted((s.architecture, s.batch_size) for s in combinations) == [
        ("attention_unet", 4),
        ("attention_unet", 8),
        ("unet", 4),
        ("unet", 8),
    ]
    assert {s.loss for s in combinations} == {"dice"}  # not a program setting: its first choice
    assert len(programs) == 4
    assert "unet base 4 depth 2, 32x32x1, micro-batch 8, float32, jit" in programs
    assert "loss" not in PROGRAM_SETTINGS and "batch_size" in PROGRAM_SETTINGS


def test_lists_without_compiling_and_refuses_a_backend_without_cache(tmp_path):
    compiled_study(tmp_path)

    listed = run_optimize(tmp_path, "warm-cache", "--study", "tiny", "--list")
    refused = run_optimize(tmp_path, "warm-cache", "--study", "tiny")
    off = run_optimize(tmp_path, "warm-cache", "--study", "tiny", "--compile-cache", "off", backend="jax")

    assert listed.returncode == 0, listed.stderr
    assert "study tiny: 4 distinct programs" in listed.stdout
    assert listed.stdout.count("micro-batch") == 4
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "the tensorflow backend keeps none: run it with KERAS_BACKEND=jax" in refused.stderr
    assert off.returncode == 2 and "compile cache off has nothing to fill" in off.stderr


def test_fills_the_compile_cache_program_by_program(tmp_path):
    """Two programs of one architecture (the tiny study's queued attention_unet left out): each compile costs
    tens of CPU seconds."""
    path = compiled_study(tmp_path, SEARCH.replace('["unet", "attention_unet"]', '["unet"]'))
    path.write_text(path.read_text().partition("[[enqueue]]")[0])
    cache = tmp_path / "cache"

    warmed = run_optimize(tmp_path, "warm-cache", "--study", "tiny", "--compile-cache", str(cache), backend="jax")

    assert warmed.returncode == 0, warmed.stdout + warmed.stderr
    assert [line.split("  ")[0] for line in warmed.stdout.splitlines() if line.startswith("program ")] == [
        "program 1/2",
        "program 2/2",
    ]
    assert "warmed 2 programs" in warmed.stdout
    assert any(cache.iterdir()), "nothing was written to the compile cache"
