"""`pytest --cpu-durations`: a test's CPU seconds include its subprocesses', once per test, under xdist too."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE_TESTS = """
import subprocess, sys, time

BURN = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 1.5: pass"

def test_child_burns():
    subprocess.run([sys.executable, "-c", BURN], check=True)

def test_own_burn():
    t = time.process_time()
    while time.process_time() - t < 0.5:
        pass

def test_idle():
    time.sleep(0.5)
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_each_test_counts_its_own_and_its_childrens_cpu_once(tmp_path, workers):
    (tmp_path / "test_probe.py").write_text(PROBE_TESTS)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.cpu_durations", "--cpu-durations=0", "-p", "no:cacheprovider",
         *workers, "test_probe.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    seconds = dict(
        (name, float(value)) for value, name in re.findall(r"^ +([\d.]+)s  test_probe\.py::(\w+)$", result.stdout, re.M)
    )
    assert list(seconds) == ["test_child_burns", "test_own_burn", "test_idle"], result.stdout
    assert 1.4 < seconds["test_child_burns"] < 3.0
    assert 0.45 < seconds["test_own_burn"] < 1.0
    assert seconds["test_idle"] < 0.2
