"""Helpers that several test files share: free ports, JSON over HTTP, made-up histories, headless Chromium."""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import sqlalchemy.pool

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not found: apt-get install chromium (.ci/run installs it)"
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)


def chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Headless Chromium on `url` with a fresh profile; the page's console errors go to stderr."""
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, "--virtual-time-budget=10000", f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        text=True,
        timeout=120,
    )


def dump_dom(url: str, profile: Path) -> tuple[str, str]:
    """The DOM after scripts ran, and Chromium's stderr (where "Uncaught ..." console errors appear)."""
    result = chromium(url, profile, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, result.stderr


def uncaught_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "Uncaught" in line]


def wait_for(condition, timeout: float, what: str, *, watching: tuple[subprocess.Popen, ...] = ()):
    """The first true value of `condition()`; fails at once, with its output, when a watched process exits
    (and kills the watched processes, showing their output, on a timeout).

    The timeouts are generous because CI runs these tests two at a time on 2 cores, beside other
    tests' workers; a worker that died is reported at once rather than after the timeout.
    """
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        for process in watching:
            if process.poll() is not None:
                out, err = process.communicate()
                exit_code = process.returncode
                raise AssertionError(f"process {process.pid} exited ({exit_code}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            outputs = []
            for process in watching:
                process.kill()
                outputs.append("\n".join(part or "" for part in process.communicate()))
            raise AssertionError(f"timed out after {timeout} s waiting for {what}" + "".join(f"\n{o}" for o in outputs))
        time.sleep(0.2)
    return value


_POLLED_STORAGES: dict[str, optuna.storages.RDBStorage] = {}


def trials_of(url: str, study: str = "tiny") -> list[optuna.trial.FrozenTrial]:
    """The study's trials, or none while it is not created yet, read through one pool-less storage per URL.

    Tests poll this several times a second while workers run: a new storage per call would leave its
    connections open until garbage collection, and PostgreSQL's 100 would run out for the workers.
    """
    if url not in _POLLED_STORAGES:
        _POLLED_STORAGES[url] = optuna.storages.RDBStorage(url, engine_kwargs={"poolclass": sqlalchemy.pool.NullPool})
    storage = _POLLED_STORAGES[url]
    if study not in optuna.get_all_study_names(storage=storage):
        return []
    return optuna.load_study(study_name=study, storage=storage).get_trials()


def read_until(process: subprocess.Popen, marker: str, count: int = 1) -> list[str]:
    """The lines `process` printed up to the `count`-th one holding `marker`; fails, showing them, if its
    output ends first."""
    lines: list[str] = []
    while sum(marker in line for line in lines) < count:
        line = process.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
    return lines


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def made_rows(epochs: int, peak: float) -> list[dict[str, float]]:
    """Rows as `EpochHistory` records them; epoch 3's val loss is NaN, as after a diverged batch."""
    return [
        {"epoch": epoch, "loss": 1 / (epoch + 1.3), "val_loss": math.nan if epoch == 3 else 1 / (epoch + 1.7)}
        | {"jaccard": peak * (1 - 0.5**epoch) + 0.05, "val_jaccard": peak * (1 - 0.5**epoch)}
        | {"lr": 1e-3 * 0.97**epoch, "seconds": 1 + epoch / 7}
        for epoch in range(1, epochs + 1)
    ]


def racing_config():
    import tomllib
    from pathlib import Path

    from optimize.search.config import parse_config

    text = "[data]\ndir = 'x'\n[search]\nlearning_rate = { low = 1e-4, high = 1e-2 }\n"
    return parse_config(tomllib.loads(text), path=Path("race.toml"), text=text)


def make_user_folders(folder: Path) -> None:
    """A working folder as a user has it: images in data/, a Python package named models/ that must never be
    imported (it raises), and an empty losses/ folder."""
    from data import write_microbeads

    write_microbeads(folder / "data", 6, size=32, seed=3)
    (folder / "models").mkdir()
    (folder / "models" / "__init__.py").write_text("raise ImportError('the user folder models/ was imported')\n")
    (folder / "losses").mkdir()


def refused_run(studies: Path) -> list[str]:
    """The stderr lines of `optimize run --study tiny` refused for its study file: exit 1 and no database made."""
    from tests.conftest import run_cli

    result = run_cli("run", "--study", "tiny", env={"OPTIMIZE_STUDIES_DIR": str(studies)})
    assert result.returncode == 1, result.stdout + result.stderr
    assert sorted(item.name for item in studies.iterdir()) == ["tiny.toml"]
    return result.stderr.splitlines()
