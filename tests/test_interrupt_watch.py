"""A stop signal ends a worker within seconds even while one batch blocks for minutes."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import optuna
import pytest
from optuna.trial import TrialState

from optimize.workers.interrupt import STOP_WITHIN
from tests.conftest import OPTIMIZE, write_tiny_study
from tests.helpers import read_until


@pytest.mark.parametrize("phase", ["train", "val"])
def test_sigterm_during_a_slow_batch_hands_the_trial_back_within_seconds(tmp_path, phase):
    studies = tmp_path / "studies"
    write_tiny_study(studies, max_trials=3, max_epochs=4)
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    worker = subprocess.Popen(
        [OPTIMIZE, "run", "--study", "tiny", "--storage", url, "--n-trials", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **os.environ,
            "OPTIMIZE_STUDIES_DIR": str(studies),
            "PYTHONUNBUFFERED": "1",
            "OPTIMIZE_TEST_SLOW_STEP": f"{phase}:600",
        },
    )
    read_until(worker, f"injected slow {phase} step")
    sent = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=60)
    stopped_after = time.monotonic() - sent
    assert worker.returncode == 143, output
    assert stopped_after < STOP_WITHIN + 10, output
    assert f"did not end within {STOP_WITHIN:g} s of SIGTERM; trial 0 was handed back" in output
    trials = optuna.load_study(study_name="tiny", storage=url).get_trials()
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs["reason"] == "interrupted"
    requeued = [t for t in trials if t.user_attrs.get("requeued_from") == 0]
    assert [t.state for t in requeued] == [TrialState.WAITING]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
