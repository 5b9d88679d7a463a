"""A bug in our own code shows its traceback, and a worker stops after the same error in several trials in a row."""

from __future__ import annotations

import io
import os
import subprocess

import optuna
from optuna.trial import TrialState

from optimize.results.record import read_record
from optimize.workers.failures import EXIT_REPEATED_ERRORS, RepeatedErrors
from tests.conftest import OPTIMIZE, write_tiny_study

TRACEBACK = "Traceback (most recent call last)"


def run_with_injected_error(folder, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPTIMIZE_STUDIES_DIR": str(folder), "OPTIMIZE_TEST_ERROR": "injected bug in a loss"}
    env.pop("OPTIMIZE_STORAGE", None)
    return subprocess.run(
        [OPTIMIZE, "run", "--study", "tiny", *args], env=env, capture_output=True, text=True, timeout=600
    )


def test_a_worker_stops_after_three_trials_with_the_same_error(tmp_path):
    write_tiny_study(tmp_path, max_epochs=1)
    result = run_with_injected_error(tmp_path, "--n-trials", "8")
    assert result.returncode == EXIT_REPEATED_ERRORS, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert out.count(TRACEBACK) == 1, out
    assert "ValueError: injected bug in a loss" in out
    assert "optimize/training/injected_faults.py" in out
    assert out.count("failed with the same error as trial 0") == 2
    assert "stopped: 3 trials in a row (0, 1, 2) failed with ValueError" in out
    assert "stop_after_repeated_errors = 3" in out
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tiny.db'}")
    trials = study.get_trials(deepcopy=False)
    assert [trial.state for trial in trials] == [TrialState.FAIL] * 3
    records = [read_record(trial) for trial in trials]
    assert {(record.reason, record.error) for record in records} == {("error", "ValueError: injected bug in a loss")}
    assert "Traceback" not in result.stderr


def test_the_limit_is_set_in_the_study_file(tmp_path):
    path = write_tiny_study(tmp_path, max_epochs=1)
    path.write_text(path.read_text().replace("[recovery]\n", "[recovery]\nstop_after_repeated_errors = 1\n"))
    result = run_with_injected_error(tmp_path, "--n-trials", "8")
    assert result.returncode == EXIT_REPEATED_ERRORS, result.stdout[-3000:] + result.stderr[-3000:]
    assert "stopped: 1 trials in a row (0) failed with ValueError" in result.stdout


def test_a_trial_that_ends_otherwise_or_another_error_type_restarts_the_count():
    stream = io.StringIO()
    errors = RepeatedErrors(limit=2, stream=stream)
    outcomes = [ValueError, None, ValueError, TypeError, ValueError, ValueError, ValueError]

    def objective(trial: optuna.Trial) -> float:
        error = outcomes[trial.number]
        if error is None:
            return 1.0
        try:
            raise error(f"trial {trial.number}")
        except Exception as raised:
            errors.on_error(trial, raised)
            raise

    study = optuna.create_study()
    study.optimize(objective, n_trials=len(outcomes), callbacks=[errors], catch=(Exception,))
    assert len(study.trials) == 6, "stops after trials 4 and 5, the first two ValueErrors in a row"
    assert errors.stop_message.startswith("stopped: 2 trials in a row (4, 5) failed with ValueError")
    text = stream.getvalue()
    assert text.count(TRACEBACK) == 2, "one full traceback per distinct error: ValueError and TypeError"
