"""`optimize confirm`: a study's best configurations re-trained with new seeds, or on folds, in study NAME-confirm.

The source study is the tiny one without a pruner (so its trials complete), run once with the CLI; each test
trains on its own copy: the SQLite file copied, or the study copied into a fresh PostgreSQL database.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from data import make_microbeads, objects_per_image, stratified_folds
from optimize.cli import main
from optimize.results.confirmation import (
    TABLE_COLUMNS,
    ConfirmedPick,
    configuration,
    confirmation_table,
    confirmed_pick,
    ranked_complete,
)
from optimize.results.frame import stored_config
from optimize.results.record import stored_val_counts
from optimize.storage import open_storage
from optimize.workers.confirm import ConfirmOptions, plan_confirmation, toml_text
from tests.conftest import OPTIMIZE, write_tiny_study
from tests.helpers import read_until

SOURCE = "tiny"
CONFIRM = "tiny-confirm"
SOURCE_TRIALS = 3


@pytest.fixture(scope="module")
def source_db(tmp_path_factory) -> Path:
    """The tiny study, 2 epochs and no pruner, after `optimize run` completed its 3 trials (copy it before use)."""
    folder = tmp_path_factory.mktemp("confirm-source")
    config = write_tiny_study(folder / "studies", max_epochs=2, max_trials=SOURCE_TRIALS)
    config.write_text(config.read_text().replace('kind = "asha"', 'kind = "none"'))
    database = folder / "source.db"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["run", "--study", str(config), "--storage", f"sqlite:///{database}"]) == 0
    trials = load(f"sqlite:///{database}", SOURCE).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * SOURCE_TRIALS
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the whole study in the file that tests copy
    return database


@pytest.fixture
def studies(source_db, tmp_path, monkeypatch) -> Path:
    """A studies folder holding a copy of the source study as `tiny.db`, the default storage of `--study tiny`."""
    folder = tmp_path / "studies"
    folder.mkdir()
    shutil.copy(source_db, folder / "tiny.db")
    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(folder))
    monkeypatch.delenv("OPTIMIZE_STORAGE", raising=False)
    return folder


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def confirm_runs(study: optuna.Study) -> list[tuple[int, int]]:
    """(source trial, seed) of every COMPLETE run."""
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    return [(t.user_attrs["confirm_of"], t.user_attrs["confirm_seed"]) for t in complete]


def expected_runs(source: optuna.Study, top_k: int, seeds: tuple[int, ...]) -> Counter:
    return Counter((trial.number, seed) for trial in ranked_complete(source.get_trials())[:top_k] for seed in seeds)


def start_confirm(url: str, studies: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """`optimize confirm` of the source study on `url`, keeping its models in `studies`."""
    return subprocess.Popen(
        [OPTIMIZE, "confirm", "--study", SOURCE, "--storage", url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OPTIMIZE_STUDIES_DIR": str(studies), **(env or {})},
    )


def postgres_copy(source_db: Path, url: str) -> None:
    optuna.copy_study(from_study_name=SOURCE, from_storage=f"sqlite:///{source_db}", to_storage=url)


def test_confirm_retrains_the_top_configurations_with_new_seeds(studies, capsys):
    url = f"sqlite:///{studies / 'tiny.db'}"
    assert main(["confirm", "--study", SOURCE, "--top-k", "2", "--seeds", "2"]) == 0
    output = capsys.readouterr().out
    source, confirm = load(url, SOURCE), load(url, CONFIRM)
    assert len(source.get_trials()) == SOURCE_TRIALS
    assert not (studies / "tiny-confirm.db").exists()

    trials = confirm.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert Counter(confirm_runs(confirm)) == expected_runs(source, 2, (1, 2))
    for trial in trials:
        single = source.trials[trial.user_attrs["confirm_of"]]
        assert configuration(trial.params) == single.params
        assert trial.params["seed"] == trial.user_attrs["confirm_seed"] != 0  # the source trained with seed 0
        assert trial.user_attrs["epochs_run"] == 2  # full length: no pruner
        assert "reason" not in trial.user_attrs
    assert confirm.user_attrs["confirm"] == {
        "source": SOURCE,
        "top_k": 2,
        "seeds": [1, 2],
        "folds": None,
        "source_trials": [t.number for t in ranked_complete(source.get_trials())[:2]],
    }
    stored = stored_config(confirm)
    assert stored.search.get("seed").choices == (1, 2)
    assert (stored.pruner.kind, stored.sampler.kind, stored.budget.max_trials) == ("none", "random", 4)

    table = confirmation_table(confirm, source)
    assert list(table.columns) == [
        *TABLE_COLUMNS[:2],
        "architecture",
        "loss",
        "learning_rate",
        *TABLE_COLUMNS[2:],
    ]
    assert list(table["rank_single_run"]) == [1, 2]
    assert list(table["runs"]) == [2, 2]
    best = table.iloc[0]
    runs = [t.user_attrs["best_val_jaccard"] for t in trials if t.user_attrs["confirm_of"] == best["source_trial"]]
    assert best["val_jaccard_mean"] == pytest.approx(np.mean(runs))
    assert best["val_jaccard_std"] == pytest.approx(np.std(runs, ddof=1))
    assert best["single_run_value"] == source.trials[int(best["source_trial"])].value
    assert "confirm study tiny: top 2 trials" in output
    assert "4 runs as trials of study tiny-confirm" in output
    assert "mean ± std of val_jaccard and object_f1" in output
    assert output.count("single-run best") == 1

    assert main(["confirm", "--study", SOURCE, "--top-k", "2", "--seeds", "2"]) == 0
    again = capsys.readouterr().out
    assert "no queued run left in study tiny-confirm: 4 of 4 runs complete; nothing to do" in again
    assert len(load(url, CONFIRM).get_trials()) == 4

    assert main(["confirm", "--study", SOURCE, "--top-k", "3", "--seeds", "2"]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "study tiny-confirm was made by `optimize confirm --top-k 2 --seeds 2`; this command says --top-k 3" in error


def test_two_workers_on_sqlite_leave_the_whole_confirmation_in_the_database_file(studies):
    """The command's own reader stayed open while its workers ran, so their last close could not checkpoint:
    the confirmation sat in `tiny.db-wal` alone, and a copy of `tiny.db` (as one copies a study) lacked it."""
    ran = subprocess.run(
        [OPTIMIZE, "confirm", "--study", SOURCE, "--top-k", "1", "--seeds", "1", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    wal = studies / "tiny.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0, (wal.stat().st_size, ran.stdout[-1500:])
    copy = studies / "copy.db"
    shutil.copy(studies / "tiny.db", copy)
    assert len(load(f"sqlite:///{copy}", CONFIRM).get_trials(states=(TrialState.COMPLETE,))) == 1


def test_two_workers_on_postgresql_run_every_rerun_exactly_once(source_db, postgres_url, tmp_path):
    postgres_copy(source_db, postgres_url)
    pool = start_confirm(postgres_url, tmp_path, "--top-k", "2", "--seeds", "2", "--workers", "2")
    output, _ = pool.communicate(timeout=400)
    assert pool.returncode == 0, output
    source, confirm = load(postgres_url, SOURCE), load(postgres_url, CONFIRM)
    assert Counter(confirm_runs(confirm)) == expected_runs(source, 2, (1, 2))
    assert all(t.state == TrialState.COMPLETE for t in confirm.get_trials())
    assert len(source.get_trials()) == SOURCE_TRIALS
    ranks = {line[:4] for line in output.splitlines() if line.startswith("[w")}
    assert ranks == {"[w0]", "[w1]"}
    assert output.count("single-run best") == 1  # the table once, from the parent


def test_sigterm_hands_the_runs_back_and_a_rerun_completes_each_once(source_db, postgres_url, tmp_path):
    postgres_copy(source_db, postgres_url)
    options = ("--top-k", "2", "--seeds", "2", "--workers", "2")
    pool = start_confirm(postgres_url, tmp_path, *options, env={"OPTIMIZE_TEST_SLOW_STEP": "train:600"})
    lines = read_until(pool, "injected slow train step", count=2)
    sent = time.monotonic()
    pool.send_signal(signal.SIGTERM)
    output, _ = pool.communicate(timeout=90)
    assert pool.returncode == 143, "".join(lines) + output
    assert time.monotonic() - sent < 30
    trials = load(postgres_url, CONFIRM).get_trials()
    interrupted = [t for t in trials if t.user_attrs.get("reason") == "interrupted"]
    assert len(interrupted) == 2 and all(t.state == TrialState.FAIL for t in interrupted)
    for trial in interrupted:
        copies = [t for t in trials if t.user_attrs.get("requeued_from") == trial.number]
        assert [t.state for t in copies] == [TrialState.WAITING]
    assert not [t for t in trials if t.state == TrialState.RUNNING]

    finisher = start_confirm(postgres_url, tmp_path, *options)
    output, _ = finisher.communicate(timeout=400)
    assert finisher.returncode == 0, output
    source, confirm = load(postgres_url, SOURCE), load(postgres_url, CONFIRM)
    assert Counter(confirm_runs(confirm)) == expected_runs(source, 2, (1, 2))
    states = Counter(t.state for t in confirm.get_trials())
    assert states == {TrialState.COMPLETE: 4, TrialState.FAIL: 2}
    redone = [t for t in confirm.get_trials() if t.user_attrs.get("retry_of") in {i.number for i in interrupted}]
    assert len(redone) == 2 and all(t.state == TrialState.COMPLETE for t in redone)


def test_folds_validate_each_configuration_on_every_fold(studies, capsys):
    url = f"sqlite:///{studies / 'tiny.db'}"
    assert main(["confirm", "--study", SOURCE, "--top-k", "1", "--folds", "2"]) == 0
    output = capsys.readouterr().out
    assert "each trained on 2 stratified folds" in output
    source, confirm = load(url, SOURCE), load(url, CONFIRM)
    best = ranked_complete(source.get_trials())[0]
    trials = confirm.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert sorted(t.user_attrs["confirm_fold"] for t in trials) == [0, 1]
    _, masks = make_microbeads(24, 32, 1)
    folds = stratified_folds(masks, 2, seed=0)
    for trial in trials:
        assert trial.user_attrs["confirm_of"] == best.number
        assert configuration(trial.params) == best.params
        assert trial.params["fold"] == trial.user_attrs["confirm_fold"]
        beads = objects_per_image(masks[folds[trial.params["fold"]]])
        assert stored_val_counts(trial)["true"] == beads.tolist()  # validated on its fold's images
    assert table_runs(confirm, source) == [2]


def table_runs(confirm: optuna.Study, source: optuna.Study) -> list[int]:
    return list(confirmation_table(confirm, source)["runs"])


def test_bad_input_is_one_line_and_writes_nothing(studies, capsys):
    url = f"sqlite:///{studies / 'tiny.db'}"
    optuna.create_study(study_name="empty", storage=url, direction="maximize")
    before = storage_contents(url)
    cases = [
        (["--study", "nope"], 1, "no study named 'nope' in this storage; it holds: tiny, empty"),
        (["--study", "empty"], 1, "study empty has no COMPLETE trial to confirm (no trials)"),
        (["--study", SOURCE, "--seeds", "2", "--folds", "2"], 2, "argument --folds: not allowed with argument --seeds"),
        (["--study", SOURCE, "--folds", "1"], 2, "argument --folds: expected a number of folds >= 2, got '1'"),
        (["--study", SOURCE, "--folds", "25"], 1, "--folds 25: study tiny has 24 images, fewer than the folds"),
        (["--study", CONFIRM], 1, "no study named 'tiny-confirm'"),
    ]
    for args, code, message in cases:
        assert exit_code(["confirm", *args, "--storage", url]) == code, args
        error = capsys.readouterr().err.strip().splitlines()
        assert message in error[-1], error
        assert "Traceback" not in "\n".join(error)
    assert storage_contents(url) == before

    # A user's own study under the companion's name: confirm took it over (its attrs rewritten, a run queued).
    users = optuna.create_study(study_name=CONFIRM, storage=url, direction="maximize")
    users.add_trial(optuna.trial.create_trial(value=0.5))
    before = storage_contents(url)
    assert exit_code(["confirm", "--study", SOURCE, "--storage", url]) == 1
    assert capsys.readouterr().err.strip() == (
        "optimize confirm: error: study tiny-confirm exists and is not a confirmation of study tiny (it holds 1 "
        "trials and no `confirm` plan); confirm writes its runs there: rename or delete that study (optuna "
        "delete-study --study-name tiny-confirm --storage URL)"
    )
    assert storage_contents(url) == before


def exit_code(argv: list[str]) -> int:
    """`main`'s exit code, argparse's own (it exits) included."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


def storage_contents(url: str) -> dict:
    """Each study's user attrs and its trials' states and user attrs: what a command could have written."""
    return {
        name: (study.user_attrs, [(t.state, t.user_attrs) for t in study.get_trials()])
        for name in optuna.get_all_study_names(storage=url)
        for study in [load(url, name)]
    }


def test_more_top_k_than_complete_trials_confirms_those_there_are(studies):
    url = f"sqlite:///{studies / 'tiny.db'}"
    said = io.StringIO()
    _, plan = plan_confirmation(ConfirmOptions(study=SOURCE, top_k=5, seeds=1), open_storage(url, read_only=True), said)
    assert len(plan.trials) == SOURCE_TRIALS
    assert len(plan.runs()) == SOURCE_TRIALS
    assert "study tiny has 3 COMPLETE trials with distinct parameters, fewer than --top-k 5: confirming those 3" in (
        said.getvalue()
    )
    assert CONFIRM not in optuna.get_all_study_names(storage=url)


def test_stratified_folds_validate_every_image_once_with_balanced_bead_counts():
    _, masks = make_microbeads(40, 32, 3)
    counts = objects_per_image(masks)
    for k in (2, 4):
        folds = stratified_folds(masks, k, seed=5)
        assert len(folds) == k
        assert sorted(np.concatenate(folds).tolist()) == list(range(40))
        assert max(map(len, folds)) - min(map(len, folds)) <= 1
        spread = [counts[fold].mean() for fold in folds]
        assert max(spread) - min(spread) < 0.25 * counts.mean()
        assert [f.tolist() for f in stratified_folds(masks, k, seed=5)] == [f.tolist() for f in folds]


def test_toml_text_reads_back_as_the_same_table():
    import tomllib

    table = {
        "description": 'a "quoted" name',
        "metric": "val_jaccard",
        "data": {"val_fraction": 0.25, "synthetic": {"n_images": 24, "size": 32}},
        "training": {"learning_rate": 1e-05, "augment": False, "max_epochs": 2},
        "search": {"loss": ["dice", "combined"], "dropout": {"low": 0.0, "high": 0.5}, "seed": [1, 2]},
        "enqueue": [{"loss": "dice"}, {"loss": "combined"}],
    }
    assert tomllib.loads(toml_text(table)) == table


def test_export_best_picks_by_the_confirmed_mean_and_says_whether_that_changed(studies, capsys):
    url = f"sqlite:///{studies / 'tiny.db'}"
    assert main(["export-best", "--study", SOURCE]) == 0
    before = json.loads((studies / "tiny" / "export" / "best_hyperparameters.json").read_text())
    assert (before["chosen_by"], before["confirmation"]) == ("single run", None)

    assert main(["confirm", "--study", SOURCE, "--top-k", "2", "--seeds", "2"]) == 0
    capsys.readouterr()
    assert main(["status", "--study", CONFIRM]) == 0  # in tiny.db, its source's default storage, not tiny-confirm.db
    assert f"study {CONFIRM}: 4 trials" in capsys.readouterr().out and not (studies / f"{CONFIRM}.db").exists()
    assert main(["export-best", "--study", SOURCE]) == 0
    output = capsys.readouterr().out
    summary = json.loads((studies / "tiny" / "export" / "best_hyperparameters.json").read_text())
    source, confirm = load(url, SOURCE), load(url, CONFIRM)
    confirmation = summary["confirmation"]
    runs = Counter()
    values: dict[int, list[float]] = {}
    for trial in confirm.get_trials(states=(TrialState.COMPLETE,)):
        values.setdefault(trial.user_attrs["confirm_of"], []).append(trial.value)
        runs[trial.user_attrs["confirm_of"]] += 1
    by_mean = max(values, key=lambda number: np.mean(values[number]))
    assert summary["chosen_by"] == "confirmation"
    assert confirmation["pick"] == summary["trial_number"] == by_mean
    assert summary["params"] == source.trials[by_mean].params
    assert confirmation["single_run_best"] == source.best_trial.number
    assert confirmation["pick_differs"] == (by_mean != source.best_trial.number)
    assert confirmation["runs"] == {"complete": 4, "planned": 4, "failed": 0}
    for row in confirmation["configurations"]:
        assert row["runs"] == runs[row["source_trial"]] == 2
        assert row["value_mean"] == pytest.approx(np.mean(values[row["source_trial"]]))
        assert row["value_std"] == pytest.approx(np.std(values[row["source_trial"]], ddof=1))
    assert confirmation["summary"] in output
    verdict = "differs from the single-run best" if confirmation["pick_differs"] else "is also the single-run best"
    assert verdict in confirmation["summary"]
    assert f"mean val_jaccard {np.mean(values[by_mean]):.4f} ± " in confirmation["summary"]

    assert main(["report", "--study", SOURCE]) == 0
    report = studies / "tiny" / "report"
    text = (report / "REPORT.md").read_text()
    section = text.split("## Confirmation")[1].split("\n## ")[0]
    assert f"Verdict: **{confirmation['summary']}**" in section
    assert "4 of 4 runs COMPLETE" in section and "![Figure" in section
    assert (report / "figures" / "confirmation.png").stat().st_size > 10_000
    shown = pd.read_csv(report / "tables" / "confirmation_runs.csv")
    assert sorted(shown["trial"]) == [trial.number for trial in confirm.get_trials()]
    assert sorted(shown["run"]) == ["seed 1", "seed 1", "seed 2", "seed 2"]


def test_the_pick_is_named_plainly_and_waits_for_every_rerun():
    table = pd.DataFrame(
        {
            "source_trial": [4, 9],
            "rank_single_run": [1, 2],
            "runs": [3, 3],
            "value_mean": [0.70, 0.74],
            "value_std": [0.05, 0.01],
            "single_run_value": [0.81, 0.78],
        }
    )
    changed = ConfirmedPick(table, "val_jaccard", pick=9, single_run_best=4, runs_done=6, runs_planned=6)
    assert changed.differs
    assert changed.summary() == (
        "the confirmed pick, trial 9 (mean val_jaccard 0.7400 ± 0.0100 over 3 runs), differs from the single-run "
        "best, trial 4 (single run 0.8100, mean 0.7000 ± 0.0500): export-best exports trial 9"
    )
    same = ConfirmedPick(table, "val_jaccard", pick=4, single_run_best=4, runs_done=6, runs_planned=6)
    assert not same.differs
    assert (
        same.summary()
        == "confirmed: trial 4 (mean val_jaccard 0.7000 ± 0.0500 over 3 runs) is also the single-run best"
    )
    one_seed = table.assign(runs=1, value_std=float("nan"))  # `confirm --seeds 1`: no spread to show, not ± 0
    single = ConfirmedPick(one_seed, "val_jaccard", pick=9, single_run_best=4, runs_done=2, runs_planned=2)
    assert single.summary() == (
        "the confirmed pick, trial 9 (mean val_jaccard 0.7400 over 1 run), differs from the single-run best, trial 4 "
        "(single run 0.8100, mean 0.7000): export-best exports trial 9"
    )
    partial = ConfirmedPick(table, "val_jaccard", pick=None, single_run_best=4, runs_done=5, runs_planned=6)
    assert not partial.complete and not partial.differs
    assert partial.summary().startswith(
        "confirmation incomplete (5 of 6 re-runs COMPLETE): export-best exports the single-run best, trial 4;"
    )


def test_the_pick_of_an_unfinished_failed_or_overtaken_confirmation_is_said_plainly():
    """export-best, report and confirm's end table crashed on a confirmation without a COMPLETE re-run
    (IndexError) and on a single-run best the confirmation does not hold (KeyError, a trial that finished
    after it); a re-run that failed for good left the advice to run `optimize confirm`, which cannot finish it."""
    distributions = {"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)}
    source = optuna.create_study(study_name="s", direction="maximize")
    for value, rate in ((0.3, 1e-3), (0.2, 1e-4), (0.1, 1e-5)):
        source.add_trial(
            optuna.trial.create_trial(value=value, params={"learning_rate": rate}, distributions=distributions)
        )
    confirm = optuna.create_study(study_name="s-confirm", direction="maximize")
    confirm.set_user_attr(
        "confirm", {"source": "s", "top_k": 2, "seeds": [1, 2], "folds": None, "source_trials": [0, 1]}
    )
    runs = [(0, 1), (0, 2), (1, 1), (1, 2)]
    for number, seed in runs:
        confirm.enqueue_trial({"learning_rate": source.trials[number].params["learning_rate"], "seed": seed})
    waiting = confirmed_pick(source, confirm)
    assert (waiting.pick, waiting.runs_done, waiting.runs_planned, waiting.runs_failed) == (None, 0, 4, 0)
    assert waiting.summary().endswith("trial 0; run `optimize confirm` to finish it")

    for (number, seed), value in zip(runs, (0.25, 0.27, 0.22, None), strict=True):
        trial = confirm.ask()
        trial.set_user_attr("confirm_of", number)
        trial.set_user_attr("confirm_seed", seed)
        confirm.tell(trial, value, state=TrialState.FAIL if value is None else TrialState.COMPLETE)
    failed = confirmed_pick(source, confirm)
    assert (failed.pick, failed.runs_done, failed.runs_failed) == (None, 3, 1)
    assert failed.summary() == (
        "confirmation incomplete (3 of 4 re-runs COMPLETE, 1 failed and not queued again: see their errors with "
        "`optimize status` on the confirmation study): export-best exports the single-run best, trial 0"
    )

    retried = confirm.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)})
    retried.set_user_attr("confirm_of", 1)
    confirm.tell(retried, 0.21)
    source.add_trial(optuna.trial.create_trial(value=0.5, params={"learning_rate": 2e-3}, distributions=distributions))
    overtaken = confirmed_pick(source, confirm)
    assert (overtaken.pick, overtaken.single_run_best, overtaken.runs_failed) == (0, 3, 0)
    assert overtaken.summary() == (
        "the confirmed pick, trial 0 (mean val_jaccard 0.2600 ± 0.0141 over 2 runs), is not the single-run best, "
        "trial 3, which finished after the confirmation was planned and was not re-trained: export-best exports "
        "trial 0"
    )
