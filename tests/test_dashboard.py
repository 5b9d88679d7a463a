"""The live dashboard for real: `optimize dashboard` as a subprocess, its JSON API, and its pages in headless Chromium.

The Chromium helpers here are shared with the report tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import subprocess
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from PIL import Image, ImageStat

from optimize.results.record import HISTORY_ATTR, history_columns, store_history
from tests.conftest import OPTIMIZE
from tests.helpers import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    chromium,
    dump_dom,
    free_port,
    get_json,
    made_rows,
    needs_chromium,
    uncaught_errors,
)

WINDOW = (1280, 900)
"""The browser window the trial pages must fit: a laptop screen."""


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


class DevTools:
    """Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`), needing no package.

    Chromium reads commands from its file descriptor 3 and writes answers and events to 4, each a JSON
    object ended by a NUL byte.
    """

    def __init__(self, profile: Path, window: tuple[int, int] = WINDOW) -> None:
        command_read, self._commands = os.pipe()
        self._answers, answer_write = os.pipe()

        def onto_fds_3_and_4() -> None:  # copies above 4 first, so moving one cannot close the other
            high_read = fcntl.fcntl(command_read, fcntl.F_DUPFD, 10)
            high_write = fcntl.fcntl(answer_write, fcntl.F_DUPFD, 10)
            os.dup2(high_read, 3)
            os.dup2(high_write, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, "--remote-debugging-pipe", f"--window-size={window[0]},{window[1]}"]
            + [f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(3, 4),
            preexec_fn=onto_fds_3_and_4,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(command_read)
        os.close(answer_write)
        self._last_id = 0
        self._unread = b""

    def call(self, method: str, session: str | None = None, timeout: float = 30, **params: object) -> dict:
        """Send one command (to the page of `session`, else to the browser) and return its result."""
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._unread:
                ready, _, _ = select.select([self._answers], [], [], max(0.0, deadline - time.monotonic()))
                chunk = os.read(self._answers, 1 << 16) if ready else b""
                assert chunk, f"Chromium did not answer {method} (exit code {self.process.poll()})"
                self._unread += chunk
            raw, self._unread = self._unread.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._last_id:
                assert "error" not in answer, f"{method}: {answer['error']}"
                return answer["result"]

    def page_layout(self, url: str, ready: str, timeout: float = 60) -> dict:
        """Open `url` in a new tab; once its text shows `ready` and its width stopped changing, return
        `{"scroll_width", "window_width", "text"}`."""
        target = self.call("Target.createTarget", url=url)["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        expression = (
            "({scroll_width: document.documentElement.scrollWidth, window_width: window.innerWidth,"
            " text: document.body ? document.body.innerText : ''})"
        )
        deadline = time.monotonic() + timeout
        previous = None
        while True:
            result = self.call("Runtime.evaluate", session, expression=expression, returnByValue=True)["result"]
            layout = result.get("value")  # none while the page is between documents
            if layout and ready in layout["text"]:
                if previous and previous["scroll_width"] == layout["scroll_width"]:
                    self.call("Target.closeTarget", targetId=target)
                    return layout
                previous = layout
            assert time.monotonic() < deadline, f"{url} never showed {ready!r}: {(layout or {}).get('text', '')[:500]}"
            time.sleep(0.5)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        os.close(self._commands)
        os.close(self._answers)


@contextlib.contextmanager
def devtools(profile: Path):
    """A `DevTools` browser, closed on leaving."""
    browser = DevTools(profile)
    try:
        yield browser
    finally:
        browser.close()


@contextlib.contextmanager
def served_dashboard(studies: Path, study_name: str, log: Path):
    """`optimize dashboard --study NAME` on the studies folder, its output in `log`; yields (base URL, study id)."""
    port = free_port()
    with open(log, "w") as stdout:
        process = subprocess.Popen(
            [OPTIMIZE, "dashboard", "--study", study_name, "--port", str(port)],
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
        yield base, next(s["study_id"] for s in summaries if s["study_name"] == study_name)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def dashboard(finished_study, tmp_path_factory):
    """`optimize dashboard` serving the finished study; yields (base URL, study id, its printed output file)."""
    log = tmp_path_factory.mktemp("dashboard") / "stdout.txt"
    with served_dashboard(finished_study[1], "tiny", log) as (base, study_id):
        yield base, study_id, log


def trial_page(base: str, study_id: int, number: int) -> str:
    """The dashboard's page of one trial (its "Trials" view with that trial selected)."""
    return f"{base}/dashboard/studies/{study_id}/trials?numbers={number}"


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
        assert "history" not in attrs  # kept in the database as a system attr, which the dashboard does not list
        for key in ("worker", "best_epoch", "epochs_run", "stability", "images_per_epoch"):
            value = trial.user_attrs[key]
            assert attrs[key] == ("null" if value is None else str(value))  # as the dashboard writes them
        if trial.state == TrialState.PRUNED:
            assert attrs["reason"] == trial.user_attrs["reason"]
    assert detail["best_trials"][0]["number"] == study.best_trial.number
    best = study.best_trial
    models = served[best.number]["artifacts"]
    assert [model["filename"] for model in models] == [f"trial_{best.number:04d}_model.keras"]
    url = f"{base}/artifacts/{study_id}/{best._trial_id}/{models[0]['artifact_id']}"
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read()[:2] == b"PK"  # a .keras file is a zip archive


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


@needs_chromium
def test_trial_pages_fit_the_window(dashboard, finished_study, tmp_path):
    """The pages of a real run's best and of a pruned trial are no wider than the window and list their summaries."""
    base, study_id, _ = dashboard
    study = finished_study[0]
    pruned = next(trial for trial in study.get_trials() if trial.state == TrialState.PRUNED)
    with devtools(tmp_path / "profile") as browser:
        for trial in (study.best_trial, pruned):
            page = trial_page(base, study_id, trial.number)
            layout = browser.page_layout(page, ready=f"Trial {trial.number} (trial_id=")
            assert layout["window_width"] == WINDOW[0]
            assert layout["scroll_width"] <= WINDOW[0], f"trial {trial.number}: {layout['scroll_width']} px wide"
            shown = layout["text"].split("User Attributes", 1)[1]
            assert f"best_epoch {trial.user_attrs['best_epoch']}" in shown
            assert f"images_per_epoch {trial.user_attrs['images_per_epoch']}" in shown
            if trial.state == TrialState.PRUNED:
                assert f"reason {trial.user_attrs['reason']}" in shown


@needs_chromium
def test_a_long_history_fits_where_the_old_history_attr_overflowed(tmp_path):
    """100 epochs stored as `optimize run` stores them fit the window; the old `history` user attr of 12 epochs did not.

    The second half is the page as it was before (7,000 px wide): it shows the width check fails on it.
    """
    studies = tmp_path / "studies"
    studies.mkdir()
    study = optuna.create_study(study_name="long", storage=f"sqlite:///{studies / 'long.db'}", direction="maximize")
    trial = study.ask({"learning_rate": FloatDistribution(1e-5, 1e-2, log=True)})
    store_history(trial, made_rows(100, peak=0.9))
    trial.set_user_attr("best_epoch", 100)
    study.tell(trial, 0.9)
    old_form = made_rows(12, peak=0.5)
    study.add_trial(
        optuna.trial.create_trial(
            params={"learning_rate": 1e-3},
            distributions={"learning_rate": FloatDistribution(1e-5, 1e-2, log=True)},
            value=0.5,
            user_attrs={"history": history_columns(old_form), "best_epoch": 12},
        )
    )
    assert HISTORY_ATTR in study.trials[0].system_attrs and "history" not in study.trials[0].user_attrs
    with served_dashboard(studies, "long", tmp_path / "stdout.txt") as (base, study_id):
        with devtools(tmp_path / "profile") as browser:
            new = browser.page_layout(trial_page(base, study_id, 0), ready="best_epoch 100")
            old = browser.page_layout(trial_page(base, study_id, 1), ready="best_epoch 12")
    assert new["scroll_width"] <= new["window_width"] == WINDOW[0]
    assert old["scroll_width"] > 3 * old["window_width"], old["scroll_width"]


def test_an_empty_host_or_an_artifacts_folder_that_is_not_one_is_refused(finished_study, tmp_path, monkeypatch, capsys):
    """`--host ""` (an unset $HOST) served on every network interface; `--artifacts FILE` and a missing folder
    served without models, saying a file that exists 'does not exist'."""
    from optimize.cli import main

    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(finished_study[1]))
    with pytest.raises(SystemExit) as exited:
        main(["dashboard", "--study", "tiny", "--host", ""])
    assert exited.value.code == 2 and "argument --host: expected a value, got ''" in capsys.readouterr().err
    a_file, missing = tmp_path / "notes.txt", tmp_path / "no models"
    a_file.write_text("")
    assert main(["dashboard", "--study", "tiny", "--artifacts", str(a_file)]) == 2
    assert capsys.readouterr().err == (
        f"optimize dashboard: error: {a_file} (--artifacts) is a file; expected the folder of the study's kept models\n"
    )
    assert main(["dashboard", "--study", "tiny", "--artifacts", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"optimize dashboard: error: --artifacts {missing}: {missing} does not exist; expected the kept models' "
        "folder\n"
    )
