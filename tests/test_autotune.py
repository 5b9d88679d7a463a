"""`[training] xla_autotune_level`: XLA's GPU autotuning level, put into `$XLA_FLAGS` before JAX starts."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from optimize.errors import UserError
from optimize.training.autotune import apply_autotune_level, flagged_level
from tests.conftest import write_tiny_study
from tests.test_compile_cache import cache_hits_in_a_new_process
from tests.test_warm_cache import run_optimize

ROOT = Path(__file__).resolve().parent.parent


def test_the_default_level_leaves_xla_flags_alone():
    environ = {"XLA_FLAGS": "--xla_dump_to=/tmp/dump"}
    assert apply_autotune_level(4, environ) is None
    assert environ == {"XLA_FLAGS": "--xla_dump_to=/tmp/dump"}
    assert apply_autotune_level(4, {}) is None


def test_another_level_is_added_to_the_flags_already_there():
    environ = {"XLA_FLAGS": "--xla_dump_to=/tmp/dump"}
    line = apply_autotune_level(1, environ)
    assert environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/dump --xla_gpu_autotune_level=1"
    assert line.startswith("XLA autotune level 1 (xla_autotune_level;")
    empty: dict[str, str] = {}
    apply_autotune_level(0, empty)
    assert empty == {"XLA_FLAGS": "--xla_gpu_autotune_level=0"}


def test_a_level_in_xla_flags_must_agree_with_the_study():
    agreeing = {"XLA_FLAGS": "--xla_gpu_autotune_level=2"}
    assert apply_autotune_level(2, agreeing) == "XLA autotune level 2 ($XLA_FLAGS)"
    assert agreeing == {"XLA_FLAGS": "--xla_gpu_autotune_level=2"}
    for study_level in (0, 4):
        with pytest.raises(UserError, match=r"^\$XLA_FLAGS sets --xla_gpu_autotune_level=2 but the study's "):
            apply_autotune_level(study_level, {"XLA_FLAGS": "--xla_gpu_autotune_level=2"})
    assert flagged_level("--xla_gpu_autotune_level=3 --xla_gpu_autotune_level=1") == "1"
    assert flagged_level("--xla_dump_to=/tmp/dump") is None


def run_jax(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    head = f"import os, sys\nos.environ['KERAS_BACKEND'] = 'jax'\nsys.path.insert(0, {str(ROOT)!r})\n"
    return subprocess.run(
        [sys.executable, "-c", head + textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_too_late_once_jax_has_started():
    started = run_jax(
        """
        import jax
        jax.devices()
        from optimize.training.autotune import apply_autotune_level
        apply_autotune_level(1)
        """
    )
    assert started.returncode != 0
    assert "RuntimeError: xla_autotune_level 1 must be set before JAX starts its backend" in started.stderr


def test_programs_compiled_at_one_level_are_not_served_to_another(tmp_path):
    """JAX keys its compile cache by `$XLA_FLAGS`: `warm-cache` must run with the workers' level."""
    hits = [cache_hits_in_a_new_process(tmp_path / "cache", level) for level in (1, 4, 1)]
    assert hits[0] == 0 and hits[1] == 0 and hits[2] >= 1


def test_a_worker_says_its_level_and_refuses_a_conflicting_xla_flags(tmp_path, monkeypatch):
    path = write_tiny_study(tmp_path, max_epochs=1, max_trials=1)
    path.write_text(path.read_text().replace("batch_size = 8\n", "batch_size = 8\nxla_autotune_level = 1\n"))

    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_autotune_level=0")
    refused = run_optimize(tmp_path, "run", "--study", "tiny", "--n-trials", "1")
    studies_after_refusal = sorted(path.name for path in tmp_path.iterdir())
    monkeypatch.delenv("XLA_FLAGS")
    ran = run_optimize(tmp_path, "run", "--study", "tiny", "--n-trials", "1")

    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "$XLA_FLAGS sets --xla_gpu_autotune_level=0 but the study's [training] xla_autotune_level is 1; "
            "keep one of them"
        )
    )
    assert studies_after_refusal == ["tiny.toml"], "the refused worker touched the study"
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "XLA autotune level 1 (xla_autotune_level; $XLA_FLAGS = --xla_gpu_autotune_level=1)" in ran.stdout
