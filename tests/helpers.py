"""Helpers that several test files share: free ports, JSON over HTTP, made-up histories, headless Chromium."""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

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
