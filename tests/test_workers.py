"""Real worker processes on real databases: sharing a study, SIGKILL, SIGTERM and out-of-memory."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from optimize.cli import main
from optimize.results.record import stored_history
from optimize.search.config import load_config
from optimize.training.dataset import load_study_data
from optimize.workers.objective import Objective
from optimize.workers.pool import CPU_THREAD_VARIABLES, idle_workers_note, plan_workers, split_trials, worker_env
from tests.conftest import OPTIMIZE, write_tiny_study
from tests.helpers import trials_of, wait_for


def start_worker(studies: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [OPTIMIZE, "run", "--study", "tiny", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OPTIMIZE_STUDIES_DIR": str(studies), "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def test_more_workers_than_trials_says_how_many_start():
    assert (
        idle_workers_note(plan_workers(None, 3, 1, 1))
        == "note: 1 trial(s) for 3 workers: 1 start, one trial or more each"
    )
    assert idle_workers_note(plan_workers(["0", "1"], None, 2, 3)) == (
        "note: 3 trial(s) for 4 workers: 3 start, one trial or more each"
    )
    assert idle_workers_note(plan_workers(None, 3, 1, 3)) is None
    assert idle_workers_note(plan_workers(None, 3, 1, None)) is None


def test_plan_shares_trials_and_gpus():
    assert split_trials(30, 4) == [8, 8, 7, 7]
    assert split_trials(None, 2) == [None, None]
    plan = plan_workers(["0", "1"], None, 2, 10)
    assert [(spec.rank, spec.gpu, spec.n_trials) for spec in plan] == [
        (0, "0", 3),
        (1, "0", 3),
        (2, "1", 2),
        (3, "1", 2),
    ]
    assert [spec.gpu for spec in plan_workers(None, 3, 1, None)] == [None, None, None]


def test_three_workers_share_one_study(server_url, tmp_path):
    studies = tmp_path / "studies"
    write_tiny_study(studies, max_trials=6, max_epochs=2)
    result = subprocess.run(
        [OPTIMIZE, "run", "--study", "tiny", "--workers", "3", "--storage", server_url, "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "OPTIMIZE_STUDIES_DIR": str(studies)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    trials = trials_of(server_url)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 6
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    for trial in finished:
        assert len(stored_history(trial)["epoch"]) == trial.user_attrs["epochs_run"] > 0
    ranks = {line[:4] for line in result.stdout.splitlines() if line.startswith("[w")}
    assert ranks == {"[w0]", "[w1]", "[w2]"}
    assert len({t.user_attrs["worker"] for t in finished}) == 3


def test_sigkill_trial_fails_after_grace_and_is_retried(postgres_url, tmp_path):
    studies = tmp_path / "studies"
    write_tiny_study(studies, max_trials=5, max_epochs=30, heartbeat=1, grace=4)
    victim = start_worker(studies, "--storage", postgres_url, "--n-trials", "1", "--seed", "1")
    wait_for(
        lambda: any(t.state == TrialState.RUNNING and t.last_step for t in trials_of(postgres_url)),
        480,
        "the victim's first epoch",
        watching=(victim,),
    )
    victim.kill()
    victim.wait()
    killed = next(t for t in trials_of(postgres_url) if t.state == TrialState.RUNNING)
    time.sleep(5)
    survivor = start_worker(studies, "--storage", postgres_url, "--n-trials", "2", "--seed", "2")
    output, _ = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, output
    trials = {t.number: t for t in trials_of(postgres_url)}
    assert trials[killed.number].state == TrialState.FAIL
    retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == killed.number]
    assert len(retries) == 1
    assert retries[0].params == killed.params
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert not [t for t in trials.values() if t.state == TrialState.RUNNING]


def test_sigterm_hands_the_trial_back(postgres_url, tmp_path):
    studies = tmp_path / "studies"
    write_tiny_study(studies, max_trials=3, max_epochs=40)
    worker = start_worker(studies, "--storage", postgres_url, "--n-trials", "1")
    wait_for(
        lambda: any(t.state == TrialState.RUNNING and t.last_step for t in trials_of(postgres_url)),
        480,
        "the first epoch",
        watching=(worker,),
    )
    sent = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 143, output
    assert time.monotonic() - sent < 20
    trials = trials_of(postgres_url)
    interrupted = next(t for t in trials if t.user_attrs.get("reason") == "interrupted")
    assert f"interrupted: trial {interrupted.number} was handed back to the study; exiting 143" in output
    assert interrupted.state == TrialState.FAIL
    requeued = [t for t in trials if t.user_attrs.get("requeued_from") == interrupted.number]
    assert [t.state for t in requeued] == [TrialState.WAITING]
    assert requeued[0].system_attrs["fixed_params"] == interrupted.params
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    finisher = start_worker(studies, "--storage", postgres_url, "--n-trials", "2")
    output, _ = finisher.communicate(timeout=300)
    assert finisher.returncode == 0, output
    redone = next(t for t in trials_of(postgres_url) if t.number == requeued[0].number)
    assert redone.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert redone.user_attrs["retry_of"] == interrupted.number


def test_a_signal_between_trials_starts_no_other_and_says_none_was_running(studies, monkeypatch, capsys):
    """A stop signal that came after a trial ended was reported as 'the running trial was handed back'."""
    import optimize.workers.worker as worker_module

    printer = worker_module.print_trial

    def print_then_signal(stream):
        show = printer(stream)

        def callback(study, trial):
            show(study, trial)
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C just after the trial's line

        return callback

    monkeypatch.setattr(worker_module, "print_trial", print_then_signal)
    assert main(["run", "--study", "tiny", "--n-trials", "3"]) == 130
    output = capsys.readouterr().out
    assert output.rstrip().endswith("interrupted: no trial was running; exiting 130")
    trials = trials_of(f"sqlite:///{studies / 'tiny.db'}")
    assert [t.state for t in trials if t.state not in (TrialState.WAITING,)] == [TrialState.COMPLETE]
    assert not [t for t in trials if t.user_attrs.get("reason") == "interrupted"]


def test_out_of_memory_halves_the_micro_batch(studies, monkeypatch, capsys):
    monkeypatch.setenv("OPTIMIZE_TEST_OOM_ABOVE_MICRO_BATCH", "2")
    write_tiny_study(studies, max_trials=1, max_epochs=2)
    assert main(["run", "--study", "tiny", "--n-trials", "1"]) == 0
    trial = trials_of(f"sqlite:///{studies / 'tiny.db'}")[0]
    assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert trial.user_attrs["oom_micro_batches"] == [8, 4]
    assert trial.user_attrs["micro_batch_size"] == 2
    assert trial.user_attrs["gradient_accumulation_steps"] == 4  # effective batch still 8
    n_train = optuna.load_study(study_name="tiny", storage=f"sqlite:///{studies / 'tiny.db'}").user_attrs["data_stats"][
        "n_train"
    ]
    assert trial.user_attrs["images_per_epoch"] == n_train - n_train % 2  # full micro-batches only


def test_unfittable_trial_ends_oom_and_the_worker_goes_on(studies, monkeypatch, capsys):
    monkeypatch.setenv("OPTIMIZE_TEST_OOM_ABOVE_MICRO_BATCH", "0")
    write_tiny_study(studies, max_trials=2, max_epochs=2)
    assert main(["run", "--study", "tiny", "--n-trials", "2"]) == 0
    trials = trials_of(f"sqlite:///{studies / 'tiny.db'}")
    assert len(trials) == 2
    for trial in trials:
        assert trial.state == TrialState.PRUNED
        assert trial.user_attrs["reason"] == "oom"
        assert trial.user_attrs["oom_micro_batches"] == [8, 4, 2, 1]
        assert trial.constraints == {"oom": 1.0}
    assert "(oom)" in capsys.readouterr().out


def test_nan_loss_is_pruned_with_reason(studies):
    config = load_config("tiny")
    data = load_study_data(config)
    images, masks = data.train
    poisoned = images.copy()
    poisoned[0, 0, 0, 0] = np.nan
    study = optuna.create_study(direction="maximize")
    study.optimize(Objective(config, (poisoned, masks), data.val), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["reason"] == "nan"
    assert trial.user_attrs["epochs_run"] == 1


@pytest.mark.parametrize("max_epochs, state, epochs_run", [(2, TrialState.PRUNED, 1), (1, TrialState.COMPLETE, 1)])
def test_a_trial_is_never_pruned_after_its_last_epoch(studies, max_epochs, state, epochs_run):
    """A pruner that prunes everything prunes at epoch 1 of 2, but a trial whose epoch 1 is its last completes:
    it trained all its epochs, and only a COMPLETE trial can become the study's best."""
    write_tiny_study(studies, max_epochs=max_epochs)
    config = load_config("tiny")
    data = load_study_data(config)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    study.optimize(Objective(config, data.train, data.val), n_trials=1)
    trial = study.trials[0]
    assert (trial.state, trial.user_attrs["epochs_run"]) == (state, epochs_run)
    assert trial.intermediate_values.keys() == {1}


def test_cpu_workers_share_the_cores(monkeypatch):
    for name in CPU_THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    unpinned = plan_workers(None, 4, 1, None)
    assert {worker_env(spec, False, len(unpinned))["TF_NUM_INTRAOP_THREADS"] for spec in unpinned} == {"2"}
    pinned = plan_workers(["0"], None, 1, None)[0]
    assert "TF_NUM_INTRAOP_THREADS" not in worker_env(pinned, False, 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert "TF_NUM_INTRAOP_THREADS" not in worker_env(unpinned[0], False, 4)
