"""A user's own `data/`, `models/` and `losses/` folders in the working directory never shadow our packages.

People keep their images in `data/` and their saved models in `models/`; `python -m optimize` puts the
working directory first on the import path. Every entry point must still import this project's packages
(the PBS worker script runs from such a folder in tests/test_pbs.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import OPTIMIZE, write_tiny_study
from tests.helpers import make_user_folders

PYTHON_M = [sys.executable, "-m", "optimize"]


@pytest.fixture
def user_folder(tmp_path) -> Path:
    """A working folder as a user has it: images in data/, a Python package named models/, an empty losses/."""
    folder = tmp_path / "work"
    make_user_folders(folder)
    write_tiny_study(folder / "studies", max_epochs=1)
    return folder


def run_in(folder: Path, command: list[str], *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPTIMIZE_STUDIES_DIR": str(folder / "studies")}
    env.pop("OPTIMIZE_STORAGE", None)
    return subprocess.run([*command, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("command", [[OPTIMIZE], PYTHON_M], ids=["optimize", "python -m optimize"])
def test_data_stats_reads_the_users_data_folder(user_folder, command):
    result = run_in(user_folder, command, "data-stats", "data")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Foreground fraction" in result.stdout
    assert "Traceback" not in result.stderr


def test_run_from_a_folder_with_data_models_and_losses(user_folder):
    result = run_in(user_folder, PYTHON_M, "run", "--study", "tiny", "--n-trials", "1")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "trial    0  COMPLETE" in result.stdout


def test_run_with_two_worker_processes_from_that_folder(user_folder):
    result = run_in(user_folder, [OPTIMIZE], "run", "--study", "tiny", "--n-trials", "2", "--workers", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[w0] trial" in result.stdout and "[w1] trial" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    wal = user_folder / "studies" / "tiny.db-wal"  # the study is in tiny.db itself, for a copy of the file
    assert not wal.exists() or wal.stat().st_size == 0
