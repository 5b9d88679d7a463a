"""Commands that never train never load Keras, TensorFlow or JAX: on a login node that import alone costs seconds.

Each command runs as a real process on the finished tiny study and prints, as it exits, which of the three
it loaded. `run` trains, so it loads Keras: the same probe sees it there.
"""

from __future__ import annotations

import ast
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest

from tests.conftest import write_tiny_study
from tests.helpers import free_port
from tests.test_import_results import users_folder

TRAINING_LIBRARIES = ("keras", "tensorflow", "jax")
LOADED = "loaded at exit: "
PROBE = f"""
import atexit, sys
loaded = lambda: sorted(set({TRAINING_LIBRARIES!r}) & set(sys.modules))
atexit.register(lambda: print({LOADED!r} + repr(loaded()), file=sys.stderr))
from optimize.cli import main
sys.exit(main(sys.argv[1:]))
"""
"""`optimize ARGS` as `python -c PROBE ARGS`: the console script's code, plus the line at exit."""


def optimize_probe(*args: str) -> list[str]:
    return [sys.executable, "-c", PROBE, *args]


def run_probe(studies: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(optimize_probe(*args), capture_output=True, text=True, timeout=300, env=studies_env(studies))


def studies_env(studies: Path) -> dict[str, str]:
    env = {**os.environ, "OPTIMIZE_STUDIES_DIR": str(studies), "PYTHONUNBUFFERED": "1"}
    env.pop("OPTIMIZE_STORAGE", None)
    return env


def loaded(stderr: str) -> list[str]:
    """The training libraries the probed process had imported when it exited."""
    lines = [line for line in stderr.splitlines() if line.startswith(LOADED)]
    assert len(lines) == 1, stderr
    return ast.literal_eval(lines[0].removeprefix(LOADED))


@pytest.mark.parametrize(
    ("command", "printed"),
    [
        (["status"], "COMPLETE"),
        (["export-best", "--out", "{out}"], "best_hyperparameters.json"),
        (["report", "--out", "{out}"], "REPORT.md"),
    ],
    ids=["status", "export-best", "report"],
)
def test_reading_a_study_never_loads_keras(finished_study, tmp_path, command, printed):
    args = [part.format(out=tmp_path / "out") for part in command]
    result = run_probe(finished_study[1], *args, "--study", "tiny")
    assert result.returncode == 0, result.stderr
    assert printed in result.stdout
    assert loaded(result.stderr) == []


def test_dashboard_serves_and_stops_without_keras(finished_study, tmp_path):
    port = free_port()
    log = tmp_path / "stdout.txt"
    with log.open("w") as stdout:
        process = subprocess.Popen(
            optimize_probe("dashboard", "--study", "tiny", "--port", str(port)),
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            env=studies_env(finished_study[1]),
        )
    try:
        page = study_page(process, log)
        with urllib.request.urlopen(page, timeout=30) as response:
            assert response.status == 200
            assert b"<html" in response.read().lower()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130, stderr
    assert "interrupted by SIGINT" in stderr
    assert loaded(stderr) == []


def study_page(process: subprocess.Popen, log: Path) -> str:
    """The study's page the dashboard prints once it serves (it is listening by then)."""
    deadline = time.monotonic() + 60
    while "http://" not in log.read_text():
        assert process.poll() is None, f"dashboard exited: {log.read_text()}"
        assert time.monotonic() < deadline, f"dashboard never served: {log.read_text()}"
        time.sleep(0.1)
    return next(word for word in log.read_text().split() if word.startswith("http://"))


def test_synthetic_data_and_its_statistics_never_load_keras(tmp_path):
    data = tmp_path / "beads"
    made = run_probe(tmp_path, "make-data", "--out", str(data), "--n", "4", "--size", "32")
    assert made.returncode == 0, made.stderr
    assert loaded(made.stderr) == []
    stats = run_probe(tmp_path, "data-stats", str(data))
    assert stats.returncode == 0, stats.stderr
    assert "foreground" in stats.stdout.lower()
    assert loaded(stats.stderr) == []
    evaluated = run_probe(tmp_path, "evaluate", "--pred", str(data / "masks"), "--data", str(data))
    assert evaluated.returncode == 0, evaluated.stderr
    assert "overall" in evaluated.stdout
    assert loaded(evaluated.stderr) == []


def test_run_loads_keras(finished_study, tmp_path):
    """The probe can fail: `run` on a study whose budget is spent still loads Keras before it stops."""
    studies = tmp_path / "studies"
    shutil.copytree(finished_study[1], studies)
    result = run_probe(studies, "run", "--study", "tiny", "--n-trials", "1")
    assert result.returncode == 0, result.stderr
    assert "keras" in loaded(result.stderr)


def test_importing_results_never_loads_keras(tmp_path):
    """`import-results` writes trials but trains nothing: it reads the study's data without Keras."""
    studies = tmp_path / "studies"
    write_tiny_study(studies)
    csv = users_folder(tmp_path / "old")
    result = run_probe(studies, "import-results", "--study", "tiny", str(csv), "--allow-different-data")
    assert result.returncode == 0, result.stderr
    assert "imported" in result.stdout
    assert loaded(result.stderr) == []


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one worker", "two workers"])
def test_run_refuses_bad_data_before_keras_loads_and_once(tmp_path, workers):
    """A wrong `--data` is answered in about a second, by the command itself, not after Keras' start-up in
    every worker."""
    studies = tmp_path / "studies"
    write_tiny_study(studies)
    missing = tmp_path / "no_such_images"
    result = run_probe(studies, "run", "--study", "tiny", "--data", str(missing), *workers)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error: data:" in line]
    assert len(errors) == 1 and f"{missing} does not exist" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert loaded(result.stderr) == []
    assert not (studies / "tiny.db").exists()


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one worker", "two workers"])
def test_confirm_refuses_bad_data_before_keras_loads_and_once(finished_study, tmp_path, workers):
    """`confirm` trains like `run`, and checks its data as `run` does: before Keras, once, writing nothing."""
    studies = tmp_path / "studies"
    studies.mkdir()
    shutil.copy(finished_study[1] / "tiny.toml", studies / "tiny.toml")
    source = finished_study[1] / "tiny.db"
    with (
        closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as reader,
        closing(sqlite3.connect(studies / "tiny.db")) as copy,
    ):
        reader.backup(copy)  # the study as a whole: some of it is still in the WAL file
    before = (studies / "tiny.db").read_bytes()
    missing = tmp_path / "no_such_images"
    result = run_probe(studies, "confirm", "--study", "tiny", "--top-k", "1", "--data", str(missing), *workers)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error: data:" in line]
    assert len(errors) == 1 and f"{missing} does not exist" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert loaded(result.stderr) == []
    assert (studies / "tiny.db").read_bytes() == before
