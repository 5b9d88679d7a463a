"""The live dashboard for real: `optimize dashboard` as a subprocess, its JSON API, and its page in headless Chromium.

The Chromium helpers here are shared with the report tests.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from optuna.trial import TrialState
from PIL import Image, ImageStat

from tests.conftest import OPTIMIZE

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
    "--virtual-time-budget=10000",
)


def chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Headless Chromium on `url` with a fresh profile; the page's console errors go to stderr."""
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
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


def screenshot(url: str, profile: Path, path: Path) -> Image.Image:
    result = chromium(url, profile, f"--screenshot={path}", "--window-size=1400,1000")
    assert result.returncode == 0 and path.is_file(), result.stderr[-2000:]
    return Image.open(path)


def assert_not_blank(image: Image.Image) -> None:
    """A real page: full size and more than one colour (a blank or failed page is one solid colour)."""
    assert image.size == (1400, 1000)
    extrema = image.convert("L").getextrema()
    assert extrema[1] - extrema[0] > 50, f"screenshot is nearly one colour: {extrema}"
    assert ImageStat.Stat(image.convert("L")).stddev[0] > 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def dashboard(finished_study, tmp_path_factory):
    """`optimize dashboard` serving the finished study; yields (base URL, study id, its printed output file)."""
    study, studies, _, _ = finished_study
    port = free_port()
    log = tmp_path_factory.mktemp("dashboard") / "stdout.txt"
    with open(log, "w") as stdout:
        process = subprocess.Popen(
            [OPTIMIZE, "dashboard", "--study", "tiny", "--port", str(port)],
            stdout=stdout,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OPTIMIZE_STUDIES_DIR": str(studies), "PYTHONUNBUFFERED": "1"},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"dashboard exited: {log.read_text()}"
            try:
                summaries = get_json(f"{base}/api/studies")["study_summaries"]
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"dashboard never answered: {log.read_text()}") from None
                time.sleep(0.3)
        study_id = next(s["study_id"] for s in summaries if s["study_name"] == "tiny")
        yield base, study_id, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_dashboard_api_shows_trials_and_our_attrs(dashboard, finished_study):
    base, study_id, log = dashboard
    study = finished_study[0]
    assert f"{base}/dashboard/studies/{study_id}" in log.read_text()
    detail = get_json(f"{base}/api/studies/{study_id}?after=0")
    assert detail["name"] == "tiny"
    served = {trial["number"]: trial for trial in detail["trials"]}
    trials = study.get_trials()
    assert sorted(served) == [trial.number for trial in trials]
    for trial in trials:
        shown = served[trial.number]
        assert shown["state"] == trial.state.name.capitalize()
        steps = {item["step"]: item["value"] for item in shown["intermediate_values"]}
        assert steps == pytest.approx(trial.intermediate_values)
        attrs = {item["key"]: item["value"] for item in shown["user_attrs"]}
        assert json.loads(attrs["history"]) == trial.user_attrs["history"]
        assert attrs["worker"] == trial.user_attrs["worker"]
        if trial.state == TrialState.PRUNED:
            assert attrs["reason"] == trial.user_attrs["reason"]
    assert detail["best_trials"][0]["number"] == study.best_trial.number


@needs_chromium
def test_dashboard_page_renders_trials_in_a_browser(dashboard, finished_study, tmp_path):
    base, study_id, _ = dashboard
    page = f"{base}/dashboard/studies/{study_id}"
    dom, stderr = dump_dom(page, tmp_path / "profile")
    assert f"tiny (id={study_id})" in dom
    assert f"Best Trial (number={finished_study[0].best_trial.number})" in dom
    assert "trial #11" in dom and "Intermediate values" in dom
    assert not uncaught_errors(stderr)
    assert_not_blank(screenshot(page, tmp_path / "profile", tmp_path / "dashboard.png"))
