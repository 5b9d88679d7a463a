"""The trial record (`optimize.results.record`): studies written before it and now read alike, and a re-run of
an interrupted trial names the trial it repeats wherever trials are listed."""

from __future__ import annotations

import os
import signal
import subprocess

import optuna
import pandas as pd
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from optimize.cli import main
from optimize.results import record
from optimize.results.record import Reason, read_record, requeued_attrs, store_reason, store_summary
from optimize.workers.objective import history_summary
from optimize.workers.progress import trial_line
from tests.conftest import OPTIMIZE, run_cli, write_tiny_study
from tests.helpers import made_rows, read_until

SPACE = {"learning_rate": FloatDistribution(1e-5, 1e-2, log=True)}
REQUEUED_COPY = 5
TRIALS = (
    # (state, epochs trained, reason as studies written before stored it, the reason and its detail now)
    (TrialState.COMPLETE, 3, None, None, {}),
    (TrialState.PRUNED, 3, "pruned at epoch 3", Reason.PRUNED, {"pruned_epoch": 3}),
    (TrialState.PRUNED, 1, "nan", Reason.NAN, {}),
    (TrialState.PRUNED, 0, "oom", Reason.OOM, {}),
    (TrialState.FAIL, 1, "interrupted", Reason.INTERRUPTED, {}),
    (TrialState.COMPLETE, 2, None, None, {}),  # trial 4 run again, linked to it by `requeued_from` only
    (TrialState.FAIL, 2, "ValueError: boom", Reason.ERROR, {"error": "ValueError: boom"}),
    (TrialState.FAIL, 0, "budget reached: not run", Reason.BUDGET, {}),
)
SHOWN = {
    1: "pruned at epoch 3",
    2: "nan",
    3: "oom",
    4: "interrupted",
    6: "ValueError: boom",
    7: "budget reached: not run",
}
"""How status, the run's trial lines and the report show each trial's reason."""


def write_study(url: str, name: str, form: str) -> optuna.Study:
    """`TRIALS`, each trained on made-up rows: "old" with raw Optuna calls and the old reason sentences,
    "new" with the record's writers."""
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(study_name=name, storage=url, direction="maximize", sampler=sampler)
    for number, (state, epochs, sentence, reason, detail) in enumerate(TRIALS):
        if number == REQUEUED_COPY:
            old_link = {"requeued_from": 4, "requeued": "interrupted"}
            link = old_link if form == "old" else requeued_attrs(4, Reason.INTERRUPTED)
            study.enqueue_trial({"learning_rate": 1e-3}, user_attrs=link)
        trial = study.ask(SPACE)
        rows = made_rows(epochs, peak=0.5 + number / 100)
        for row in rows:
            trial.report(row["val_jaccard"], row["epoch"])
        summary = {record.WORKER: "node1:100", **history_summary(rows)}
        if form == "old":
            for key, value in summary.items():
                trial.set_user_attr(key, value)
            if sentence is not None:
                trial.set_user_attr("reason", sentence)
        else:
            store_summary(trial, rows, summary)
            if reason is not None:
                store_reason(trial, reason, **detail)
        value = summary.get(record.BEST_VAL_JACCARD) if state == TrialState.COMPLETE else None
        study.tell(trial, value, state=state)
    return study


@pytest.fixture
def both_forms(studies) -> dict[str, optuna.Study]:
    return {form: write_study(f"sqlite:///{studies / form}.db", form, form) for form in ("old", "new")}


def test_the_record_reads_old_and_new_studies_alike(both_forms):
    old, new = (study.get_trials() for study in both_forms.values())
    assert [read_record(trial) for trial in old] == [read_record(trial) for trial in new]
    records = [read_record(trial) for trial in new]
    assert [r.reason for r in records] == [reason for _, _, _, reason, _ in TRIALS]
    assert {n: r.reason_text for n, r in enumerate(records) if r.reason_text} == SHOWN
    assert records[1].pruned_epoch == 3 and records[6].error == "ValueError: boom"
    assert [r.retry_of for r in records] == [None] * REQUEUED_COPY + [4, None, None]
    assert records[0].epochs_run == 3 and records[0].worker == "node1:100"
    # Now the reason is a code and the epoch a number of its own.
    assert new[1].user_attrs["reason"] == "pruned" and new[1].user_attrs["pruned_epoch"] == 3
    assert new[6].user_attrs["reason"] == "error" and new[6].user_attrs["error"] == "ValueError: boom"
    assert new[7].user_attrs["reason"] == "budget"
    for trial in old:
        line = trial_line(trial)
        assert line.endswith(f"  ({SHOWN[trial.number]})") if trial.number in SHOWN else "(" not in line, line


def test_status_export_and_report_show_old_and_new_studies_alike(both_forms, studies, capsys):
    expected = [f"  trial {number:4d}  {TRIALS[number][0].name:<8} {text}" for number, text in SHOWN.items()]
    results, pruning = {}, {}
    for form in both_forms:
        assert main(["status", "--study", form]) == 0
        status = capsys.readouterr().out.splitlines()
        assert status[status.index("reasons (latest):") + 1 :] == expected, (form, status)
        assert main(["export-best", "--study", form]) == 0
        assert main(["report", "--study", form]) == 0
        capsys.readouterr()
        results[form] = pd.read_csv(  # the reason "nan" is a word here, not a missing value
            studies / form / "export" / "search_results.csv", keep_default_na=False, na_values=[""]
        ).set_index("number")
        pruning[form] = pd.read_csv(studies / form / "report" / "tables" / "pruning.csv")
        failures = pd.read_csv(studies / form / "report" / "tables" / "failures.csv", dtype={"retried_by": str})
        failures = failures.set_index("number")
        assert failures["reason"].fillna("").to_dict() == {4: "interrupted", 5: ""} | {
            number: SHOWN[number] for number in (6, 7)
        }
        assert failures.loc[5, "retry_of"] == 4 and failures.loc[4, "retried_by"] == "5"
    table = results["new"]
    assert table["reason"].dropna().to_dict() == {
        1: "pruned",
        2: "nan",
        3: "oom",
        4: "interrupted",
        6: "error",
        7: "budget",
    }
    assert table["pruned_epoch"].dropna().to_dict() == {1: 3}
    assert table["error"].dropna().to_dict() == {6: "ValueError: boom"}
    assert table["retry_of"].dropna().to_dict() == {REQUEUED_COPY: 4}
    stamps = ["started", "finished", "duration_seconds"]
    pd.testing.assert_frame_equal(results["old"].drop(columns=stamps), table.drop(columns=stamps))
    assert pruning["old"].fillna(-1).values.tolist() == [
        ["not a rung", 3, 1],
        ["reason: nan", -1, 1],
        ["reason: oom", -1, 1],
    ]
    pd.testing.assert_frame_equal(pruning["old"], pruning["new"])


def test_an_error_is_stored_as_one_line_of_at_most_500_characters():
    error = ValueError("line one\nline two " + "x" * 600)
    text = record.error_text(error)
    assert text.startswith("ValueError: line one line two xxx") and len(text) == record.MAX_ERROR_CHARS
    study = optuna.create_study()
    trial = study.ask()
    store_reason(trial, Reason.ERROR, error=text)
    study.tell(trial, state=TrialState.FAIL)
    stored = read_record(study.trials[0])
    assert (stored.reason, stored.error, stored.reason_text) == (Reason.ERROR, text, text)


def test_the_rerun_of_an_interrupted_trial_names_it_in_search_results(tmp_path):
    """SIGTERM stops trial 0 in a slow batch; the next run trains its queued copy; export-best links the two."""
    studies = tmp_path / "studies"
    write_tiny_study(studies, max_trials=3, max_epochs=2)
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    env = {"OPTIMIZE_STUDIES_DIR": str(studies), "PYTHONUNBUFFERED": "1"}
    worker = subprocess.Popen(
        [OPTIMIZE, "run", "--study", "tiny", "--storage", url, "--n-trials", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env, "OPTIMIZE_TEST_SLOW_STEP": "train:600"},
    )
    read_until(worker, "injected slow train step")
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 143, output
    (copy,) = [t for t in optuna.load_study(study_name="tiny", storage=url).trials if read_record(t).retry_of == 0]
    assert copy.state == TrialState.WAITING

    for _ in range(3):  # the queued baseline (trial 1) runs first
        result = run_cli("run", "--study", "tiny", "--storage", url, "--n-trials", "1", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        trials = optuna.load_study(study_name="tiny", storage=url).trials
        if trials[copy.number].state.is_finished():
            break
    assert trials[copy.number].state in (TrialState.COMPLETE, TrialState.PRUNED), result.stdout

    result = run_cli("export-best", "--study", "tiny", "--storage", url, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    table = pd.read_csv(studies / "tiny" / "export" / "search_results.csv").set_index("number")
    assert table.loc[0, "state"] == "FAIL" and table.loc[0, "reason"] == "interrupted"
    assert table["retry_of"].dropna().astype(int).to_dict() == {copy.number: 0}
