"""Where a trial's time goes: the timing callback on a real compiled training, and the split every trial stores."""

from __future__ import annotations

import math
import threading

import optuna
import pytest
from optuna.trial import TrialState

from data import make_microbeads, stratified_split
from optimize.results.record import (
    SPLIT_COMPILE,
    SPLIT_DATABASE,
    SPLIT_HOST,
    TIME_SPLIT_PARTS,
    read_record,
)
from optimize.search.config import RecoveryConfig
from optimize.search.settings import TrainSettings
from optimize.storage.database import open_storage
from optimize.storage.resilient import ResilientStorage, worker_storage
from optimize.training.timing import FitTiming, compiled_program, trial_time_split
from optimize.training.train import train
from tests.conftest import run_cli, write_tiny_study


def test_a_compiled_training_splits_its_epochs_into_compile_steps_validation_and_host():
    images, masks = make_microbeads(24, 32, seed=0)
    train_index, val_index = stratified_split(masks, val_fraction=0.25, seed=0)
    settings = TrainSettings(base_filters=4, depth=2, batch_size=4, max_epochs=2, patience=5, run_eagerly=False)
    timing = FitTiming()
    result = train(
        settings,
        (images[train_index], masks[train_index]),
        (images[val_index], masks[val_index]),
        callbacks=[timing],
    )
    seconds = timing.seconds()
    assert all(value > 0 for value in seconds.values()), seconds
    epochs_wall = sum(row["seconds"] for row in result.history)  # EpochHistory's own clock
    assert sum(seconds.values()) == pytest.approx(timing.epochs)
    assert timing.epochs == pytest.approx(epochs_wall, rel=0.05, abs=0.05)
    later_steps = 2 * math.ceil(len(train_index) / 4) - 1  # 2 epochs of batches of 4, the first batch apart
    assert seconds[SPLIT_COMPILE] > 5 * seconds["train_steps"] / later_steps  # tracing costs more than a step
    assert compiled_program(settings, images.shape[1:]) == (
        "unet base 4 depth 2, 32x32x1, micro-batch 4, float32, no jit"
    )


def test_the_split_adds_up_to_the_trial_with_host_the_rest():
    timing = FitTiming()
    timing.compile, timing.train_steps, timing.validation = 2.0, 5.0, 1.0
    split = trial_time_split(timing, 10.0, database=0.5, bead_metrics=0.25)
    assert tuple(split) == TIME_SPLIT_PARTS
    assert split[SPLIT_HOST] == 1.25 and sum(split.values()) == pytest.approx(10.0)
    untimed = trial_time_split(timing, 10.0, database=None, bead_metrics=0.25)
    assert untimed[SPLIT_DATABASE] is None and untimed[SPLIT_HOST] == 1.75


def test_the_worker_storage_counts_each_threads_seconds_in_calls(tmp_path):
    url = f"sqlite:///{tmp_path / 'timing.db'}"
    storage = worker_storage(open_storage(url, RecoveryConfig()), RecoveryConfig(), url)
    assert isinstance(storage, ResilientStorage) and storage.seconds_in_calls() == 0.0
    study = optuna.create_study(storage=storage, study_name="timing")
    before = storage.seconds_in_calls()
    study.enqueue_trial({"x": 1.0})
    after = storage.seconds_in_calls()
    assert after > before > 0
    other_thread = []
    thread = threading.Thread(target=lambda: other_thread.append(storage.seconds_in_calls()))
    thread.start()
    thread.join()
    assert other_thread == [0.0] and storage.seconds_in_calls() == after


def test_every_trial_of_a_real_run_stores_its_time_split_and_program(tmp_path):
    folder = tmp_path / "studies"
    write_tiny_study(folder, max_epochs=2, max_trials=3)  # trial 0 completes; 1 or 2 is pruned on either backend
    ran = run_cli("run", "--study", "tiny", env={"OPTIMIZE_STUDIES_DIR": str(folder)})
    assert ran.returncode == 0, ran.stderr[-3000:]
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{folder / 'tiny.db'}")
    states = {trial.state for trial in study.trials}
    assert {TrialState.COMPLETE, TrialState.PRUNED} <= states, states
    for trial in study.trials:
        record = read_record(trial)
        split = record.time_split
        assert tuple(split) == TIME_SPLIT_PARTS, split
        assert split[SPLIT_COMPILE] > 0 and split["train_steps"] > 0
        # An epoch's one validation batch is the compile's; a second epoch validates apart from it.
        assert split["validation"] > 0 if record.epochs_run >= 2 else split["validation"] >= 0
        assert split[SPLIT_DATABASE] > 0 and split[SPLIT_HOST] > 0
        assert (split["bead_metrics"] > 0) == (trial.state == TrialState.COMPLETE)
        # The split covers the trial from its parameters to its summary; Optuna's duration also holds the
        # sampler, the summary's writes and clearing the Keras session (~0.7 s here on a loaded CPU).
        duration = trial.duration.total_seconds()
        assert 0.4 * duration < sum(split.values()) <= duration, (split, duration)
        assert record.program.endswith(f"32x32x1, micro-batch {trial.params.get('batch_size', 8)}, float32, eager")
