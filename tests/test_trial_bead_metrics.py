"""Bead-level metrics per trial: computed at the best epoch's weights, stored as user attrs, shown by every
command, and usable as the study's `metric`."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from PIL import Image

import losses
from data import evaluate_objects, load_dataset
from optimize.errors import ConfigError
from optimize.results.record import OBJECT_METRICS, read_record, stored_val_counts
from optimize.results.report import write_report
from optimize.results.report._findings import baselines
from optimize.results.report._tables import enqueued_table, study_data, top_table
from optimize.results.status import status_text
from optimize.search.config import load_config
from optimize.training.dataset import load_study_data
from optimize.training.train import train
from tests.conftest import run_cli, write_tiny_study
from tests.test_train import split, tiny_settings


def test_the_trained_model_has_its_best_epochs_weights_not_its_last():
    train_data, (val_images, val_masks) = split(16, 32)
    # Validated against the background as "beads", val Jaccard falls as the model learns the real beads, so the
    # best epoch is an early one on every seed and machine (a plain run's peak depended on the CPU's arithmetic).
    val_data = (val_images, 1 - val_masks)
    result = train(tiny_settings(max_epochs=5, learning_rate=1e-2, seed=1), train_data, val_data)
    assert result.best_epoch < result.epochs_run
    final = result.history[-1]["val_jaccard"]
    assert abs(final - result.best_val_jaccard) > 1e-3, "the last epoch must score apart from the best"
    result.model.compile(loss=losses.get("dice"), metrics=losses.metrics())
    scores = result.model.evaluate(*val_data, verbose=0, return_dict=True)
    assert scores["jaccard"] == pytest.approx(result.best_val_jaccard, abs=1e-5)


def test_label_masks_keep_touching_beads_apart_for_validation(tmp_path):
    """Two touching beads in a label image are one connected component but two beads; the study keeps two."""
    for folder in ("images", "masks"):
        (tmp_path / "beads" / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(8):
        labels = np.zeros((32, 32), np.uint16)
        labels[4:10, 4:10] = 1
        labels[4:10, 10:16] = 2  # touches bead 1
        labels[20:26, 20 - index % 3 : 26] = 3
        Image.fromarray(labels).save(tmp_path / "beads" / "masks" / f"b{index}.png")
        image = (rng.random((32, 32)) * 60 + (labels > 0) * 150).astype(np.uint8)
        Image.fromarray(image).save(tmp_path / "beads" / "images" / f"b{index}.png")
    _, kept = load_dataset(tmp_path / "beads", labels=True)
    assert kept.dtype == np.int32 and set(np.unique(kept)) == {0, 1, 2, 3}
    with pytest.warns(UserWarning, match="8 mask"):
        _, binary = load_dataset(tmp_path / "beads")
    assert set(np.unique(binary)) == {0.0, 1.0}
    write_tiny_study(tmp_path / "studies")
    study_file = tmp_path / "studies" / "tiny.toml"
    study_file.write_text(study_file.read_text().replace("[data.synthetic]\nn_images = 24\nsize = 32\nseed = 1\n", ""))
    study_file.write_text(study_file.read_text().replace("[data]\n", '[data]\ndir = "../beads"\n'))
    data = load_study_data(load_config(str(study_file)))
    assert set(np.unique(data.val[1])) == {0.0, 1.0}
    evaluation = evaluate_objects(data.val_labels, data.val_labels > 0)
    assert [scores[0].n_true for scores in evaluation.per_image] == [3] * len(data.val_labels)
    assert [scores[0].n_pred for scores in evaluation.per_image] == [2] * len(data.val_labels)


def test_every_complete_trial_stores_its_bead_metrics(finished_study):
    study = finished_study[0]
    n_val = study.user_attrs["data_stats"]["n_val"]
    for trial in study.trials:
        record = read_record(trial)
        if trial.state == TrialState.COMPLETE:
            for name in OBJECT_METRICS:
                assert name in trial.user_attrs
            assert 0 <= record.val_object_f1 <= 1 and 0 <= record.val_object_ap50 <= record.val_object_f1
            assert record.val_count_error >= 0 and record.object_metrics_seconds > 0
            assert trial.value == record.best_val_jaccard  # the study's metric is val Jaccard by default
            counts = stored_val_counts(trial)
            assert len(counts["true"]) == len(counts["predicted"]) == n_val
            mean_error = np.mean(
                [abs(p - t) / max(t, 1) for t, p in zip(counts["true"], counts["predicted"], strict=True)]
            )
            assert record.val_count_error == pytest.approx(mean_error)
        else:
            assert not set(OBJECT_METRICS) & set(trial.user_attrs)
            assert stored_val_counts(trial) is None


@pytest.fixture(scope="module")
def object_f1_study(tmp_path_factory):
    """A tiny study run with `metric = "val_object_f1"` through the CLI, then exported and reported."""
    folder = tmp_path_factory.mktemp("metric") / "studies"
    write_tiny_study(folder, max_epochs=2, max_trials=3)
    path = folder / "tiny.toml"
    path.write_text('metric = "val_object_f1"\n' + path.read_text())
    env = {"OPTIMIZE_STUDIES_DIR": str(folder)}
    ran = run_cli("run", "--study", "tiny", env=env)
    assert ran.returncode == 0, ran.stderr
    outputs = {command: run_cli(command, "--study", "tiny", env=env) for command in ("status", "export-best", "report")}
    for command, result in outputs.items():
        assert result.returncode == 0, (command, result.stderr)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{folder / 'tiny.db'}")
    return study, folder, ran.stdout, outputs["status"].stdout


def test_the_study_metric_is_the_trials_value_and_named_everywhere(object_f1_study):
    study, folder, run_output, status = object_f1_study
    assert study.metric_names == ["val_object_f1"]
    complete = [trial for trial in study.trials if trial.state == TrialState.COMPLETE]
    assert complete
    for trial in complete:
        assert trial.value == trial.user_attrs["val_object_f1"]
        assert trial.user_attrs["best_val_jaccard"] != trial.value
    best = study.best_trial
    assert re.search(rf"best  val_object_f1 {best.value:.4f}: trial {best.number}  val_jaccard ", run_output)
    assert f"val_object_f1 {best.value:.4f}: trial {best.number}" in status
    assert "beads (IoU 0.5): object_f1" in status

    exported = json.loads((folder / "tiny" / "export" / "best_hyperparameters.json").read_text())
    assert exported["objective"] == "val_object_f1 (maximize)"
    assert exported["object_metrics"] == {name: best.user_attrs[name] for name in OBJECT_METRICS}
    assert exported["val_jaccard"] == best.user_attrs["best_val_jaccard"]
    table = pd.read_csv(folder / "tiny" / "export" / "search_results.csv")
    assert list(table.columns[3:10]) == ["value", "val_jaccard", *OBJECT_METRICS]
    ranked = table[table["state"] == "COMPLETE"]
    assert list(ranked["value"]) == sorted(ranked["value"], reverse=True)

    report = (folder / "tiny" / "report" / "REPORT.md").read_text()
    assert f"by the study's metric `val_object_f1` = **{best.value:.4f}**" in report
    assert "## Bead-level metrics" in report
    counts = pd.read_csv(folder / "tiny" / "report" / "tables" / "bead_counts.csv")
    assert list(counts["true"]) == stored_val_counts(best)["true"]
    metrics = pd.read_csv(folder / "tiny" / "report" / "tables" / "object_metrics.csv")
    assert metrics.loc[0, "number"] == best.number


@pytest.mark.parametrize("value", ['"val_count_error"', '"f1"', "3"])
def test_a_metric_the_search_cannot_maximize_is_refused_at_load(tmp_path, value):
    path = write_tiny_study(tmp_path)
    path.write_text(f"metric = {value}\n" + path.read_text())
    with pytest.raises(ConfigError, match=r"tiny\.toml: metric = .* is not one of val_jaccard, val_object_f1, "):
        load_config(str(path))


METRIC_CONFIG = """{metric}
[data.synthetic]
n_images = 8

[training]
max_epochs = 20

[search]
learning_rate = {{ low = 1e-5, high = 1e-2, log = true }}
loss = ["dice", "focal"]
"""
METRIC_DISTRIBUTIONS = {
    "learning_rate": FloatDistribution(1e-5, 1e-2, log=True),
    "loss": CategoricalDistribution(["dice", "focal"]),
}


def metric_study(metric: str, trials: list[tuple[TrialState, float, float | None, bool]]) -> optuna.Study:
    """An in-memory study searching `metric`, with a trial per (state, val Jaccard, val_object_f1, enqueued) as
    the objective stores it (bead-level metrics for COMPLETE trials only; the value is the study's metric)."""
    study = optuna.create_study(study_name="metric", direction="maximize")
    study.set_metric_names([metric])
    study.set_user_attr("config_toml", METRIC_CONFIG.format(metric=f'metric = "{metric}"'))
    study.set_user_attr("config_file", "studies/metric.toml")
    start = datetime(2025, 1, 1, 12)
    for number, (state, jaccard, f1, enqueued) in enumerate(trials):
        curve = [jaccard * epoch / 6 for epoch in range(1, 7)]
        attrs = {"epochs_run": 6, "best_epoch": 6, "best_val_jaccard": jaccard, "final_val_jaccard": jaccard}
        if f1 is not None:
            attrs |= {"val_object_f1": f1, "val_object_ap50": f1 / 2, "val_count_error": 0.2}
        if enqueued:
            attrs["enqueued"] = True
        value = (jaccard if metric == "val_jaccard" else f1) if state == TrialState.COMPLETE else None
        trial = optuna.trial.create_trial(
            state=state,
            value=value,
            params={"learning_rate": 10 ** -(2 + number / 4), "loss": ["dice", "focal"][number % 2]},
            distributions=METRIC_DISTRIBUTIONS,
            user_attrs=attrs,
            intermediate_values=dict(enumerate(curve, 1)),
        )
        trial.datetime_start = start + timedelta(minutes=10 * number)
        trial.datetime_complete = None if state == TrialState.RUNNING else trial.datetime_start + timedelta(minutes=5)
        study.add_trial(trial)
    return study


# The enqueued baseline 0 has the highest val Jaccard of the COMPLETE trials, trial 1 the highest val_object_f1;
# the PRUNED trial 3 reached the highest val Jaccard of all before it was stopped.
F1_TRIALS = [
    (TrialState.COMPLETE, 0.30, 0.60, True),
    (TrialState.COMPLETE, 0.25, 0.70, False),
    (TrialState.COMPLETE, 0.22, 0.65, False),
    (TrialState.PRUNED, 0.40, None, False),
]


def test_baselines_and_top_trials_are_compared_by_the_studys_metric():
    data = study_data(metric_study("val_object_f1", F1_TRIALS))
    assert data.config.metric == "val_object_f1"
    (finding,) = baselines(data)
    assert finding.text == (
        "the best enqueued baseline (trial 0, val_object_f1 0.6000) is 0.1000 below the best trial "
        "(1, val_object_f1 0.7000)."
    )
    enqueued = enqueued_table(data)
    assert enqueued["number"].tolist() == [0]
    assert enqueued.loc[0, "val_object_f1"] == 0.60 and enqueued.loc[0, "val_jaccard"] == 0.30
    assert enqueued.loc[0, "minus_best"] == pytest.approx(-0.10)
    top = top_table(data)
    assert top["number"].tolist() == [1, 2, 0, 3]
    assert top["val_object_f1"].tolist()[:3] == [0.70, 0.65, 0.60] and pd.isna(top.loc[3, "val_object_f1"])

    best_baseline = [(state, jaccard, f1, number == 1) for number, (state, jaccard, f1, _) in enumerate(F1_TRIALS)]
    (finding,) = baselines(study_data(metric_study("val_object_f1", best_baseline)))
    assert finding.text == (
        "the best trial (1, val_object_f1 0.7000) is an enqueued baseline: "
        "the search did not beat it in 2 other COMPLETE trials."
    )


def test_a_complete_trial_without_its_stored_metric_is_valued_by_its_optuna_value():
    """A best trial whose record lacks the metric (its value is the metric all the same) printed nan in the
    baselines line and the enqueued table's minus_best."""
    study = metric_study("val_object_f1", F1_TRIALS)
    study.add_trial(
        optuna.trial.create_trial(
            value=0.8,
            params={"learning_rate": 1e-3, "loss": "dice"},
            distributions=METRIC_DISTRIBUTIONS,
            user_attrs={"epochs_run": 6, "best_epoch": 6, "best_val_jaccard": 0.2},
        )
    )
    data = study_data(study)
    (finding,) = baselines(data)
    assert finding.text == (
        "the best enqueued baseline (trial 0, val_object_f1 0.6000) is 0.2000 below the best trial "
        "(4, val_object_f1 0.8000)."
    )
    assert enqueued_table(data).loc[0, "minus_best"] == pytest.approx(-0.2)
    assert top_table(data)["val_object_f1"].tolist()[:4] == [0.8, 0.7, 0.65, 0.6]


def test_val_jaccard_studies_keep_their_baseline_and_top_tables():
    data = study_data(metric_study("val_jaccard", F1_TRIALS))
    (finding,) = baselines(data)
    assert finding.text == (
        "the best trial (0, 0.3000) is an enqueued baseline: the search did not beat it in 3 other COMPLETE + "
        "PRUNED trials."
    )
    enqueued = enqueued_table(data)
    columns = ["rank", "number", "state", "learning_rate", "loss", "val_jaccard", "best_epoch", "epochs_run"]
    assert enqueued.columns.tolist() == [*columns, "minus_best"]
    assert enqueued.loc[0, "minus_best"] == 0
    assert top_table(data).columns.tolist() == [*columns, "final_val_jaccard"]


def test_status_shows_the_best_trials_bead_metrics_under_it_not_under_a_running_trial():
    trials = [*F1_TRIALS, (TrialState.RUNNING, 0.10, None, False)]
    lines = status_text(metric_study("val_object_f1", trials)).splitlines()
    best = next(index for index, line in enumerate(lines) if line.startswith("best: val_object_f1 0.7000: trial 1 "))
    assert lines[best + 1].strip().startswith("beads (IoU 0.5): object_f1 0.7000  object_ap50 0.3500")
    assert lines[best + 2] == "running:" and lines[best + 3].startswith("  trial    4  epoch   6")
    assert sum("beads (IoU 0.5)" in line for line in lines) == 1


def test_the_rank_correlation_of_a_metric_that_never_varies_is_said_to_be_undefined(tmp_path, recwarn):
    """Spearman's rho of a constant column is NaN, and scipy warns about it on stderr; say why instead."""
    same_f1 = [(TrialState.COMPLETE, 0.2 + k / 100, 0.5, False) for k in range(3)]
    out = write_report(metric_study("val_object_f1", same_f1), None, tmp_path / "report")
    markdown = (out / "REPORT.md").read_text()
    assert "object F1 over these trials: n/a (val_object_f1 the same in every trial)." in markdown
    assert not [warning for warning in recwarn if "constant" in str(warning.message).lower()]


def test_status_lists_a_trial_that_a_heartbeat_check_failed_among_the_reasons():
    """Such a trial stores no reason (its worker was gone); the report names it, and so must status."""
    lines = status_text(metric_study("val_jaccard", [*F1_TRIALS, (TrialState.FAIL, 0.1, None, False)])).splitlines()
    assert lines[lines.index("reasons (latest):") + 1 :] == ["  trial    4  FAIL     worker lost (heartbeat)"]
