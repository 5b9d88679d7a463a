"""A trial's per-epoch history in the database: `export-best` and `report` read the form `optimize run` writes now
(system attr `optimize:history`) and the form of studies written before (user attr `history`) alike."""

from __future__ import annotations

import base64
import json
import math
import re

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from optimize.cli import main
from optimize.results.record import HISTORY_ATTR, HISTORY_COLUMNS, history_columns, store_history
from optimize.workers.objective import history_summary
from tests.helpers import made_rows

DISTRIBUTIONS = {"learning_rate": FloatDistribution(1e-5, 1e-2, log=True)}
TRIALS = ((TrialState.COMPLETE, 12, 0.8), (TrialState.COMPLETE, 12, 0.6), (TrialState.PRUNED, 4, 0.3))
"""(state, epochs, peak val Jaccard) of each trial of the studies written here."""


ROWS = [made_rows(epochs, peak) for _, epochs, peak in TRIALS]


def write_study(url: str, name: str, form: str) -> optuna.Study:
    """The trials of `TRIALS`: "new" as the objective stores them now, "old" with the user attr `history`."""
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    for (state, _, _), rows in zip(TRIALS, ROWS, strict=True):
        summary = history_summary(rows)
        value = summary["best_val_jaccard"] if state == TrialState.COMPLETE else None
        if form == "new":
            trial = study.ask({"learning_rate": FloatDistribution(1e-5, 1e-2, log=True)})
            for row in rows:
                trial.report(row["val_jaccard"], row["epoch"])
            store_history(trial, rows)
            for key, attr in summary.items():
                trial.set_user_attr(key, attr)
            study.tell(trial, value, state=state)
        else:
            old = optuna.trial.create_trial(
                state=state,
                value=value,
                params={"learning_rate": 1e-3},
                distributions=DISTRIBUTIONS,
                user_attrs={"history": history_columns(rows), **summary},
                intermediate_values={row["epoch"]: row["val_jaccard"] for row in rows},
            )
            study.add_trial(old)
    return study


def figure_arrays(html: str) -> list[list[float]]:
    """Every x and y array of the plotly figures embedded in report.html (plotly writes numbers as base64)."""
    decoder, arrays = json.JSONDecoder(), []
    for call in re.finditer(r'Plotly\.newPlot\(\s*"figure-\d+",\s*', html):
        traces, _ = decoder.raw_decode(html, call.end())
        for trace in traces:
            for axis in ("x", "y"):
                values = trace.get(axis)
                if isinstance(values, dict) and "bdata" in values:
                    values = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
                if isinstance(values, list):
                    arrays.append([math.nan if value is None else value for value in values])
    return arrays


def test_export_and_report_read_the_old_and_the_new_form(studies, capsys):
    exported = {}
    for form in ("old", "new"):
        study = write_study(f"sqlite:///{studies / form}.db", form, form)
        stored = study.trials[0]
        assert (HISTORY_ATTR in stored.system_attrs, "history" in stored.user_attrs) == (form == "new", form == "old")
        assert main(["export-best", "--study", form]) == 0
        assert main(["report", "--study", form]) == 0
        exported[form] = [
            pd.read_csv(studies / form / "export" / "histories" / f"trial_{number:04d}.csv")
            for number in range(len(TRIALS))
        ]
        arrays = figure_arrays((studies / form / "report" / "report.html").read_text())
        best = history_columns(ROWS[0])
        for column in ("loss", "jaccard"):  # only in the history: the intermediate values are val Jaccard
            assert any(array == pytest.approx(best[column]) for array in arrays), (form, column)
    capsys.readouterr()
    for rows, old, new in zip(ROWS, exported["old"], exported["new"], strict=True):
        pd.testing.assert_frame_equal(old, new)
        assert list(new.columns) == list(HISTORY_COLUMNS) and len(new) == len(rows)
        expected = pd.DataFrame(history_columns(rows)).astype(float)
        pd.testing.assert_frame_equal(new.astype(float), expected)
        assert new["val_loss"].isna().tolist() == [row["epoch"] == 3 for row in rows]


def test_a_stored_history_that_is_not_a_table_is_named(studies, capsys):
    study = write_study(f"sqlite:///{studies / 'broken.db'}", "broken", "new")
    broken = {"epoch": [1, 2, 3], "loss": [0.5]}
    study.add_trial(optuna.trial.create_trial(value=0.1, system_attrs={HISTORY_ATTR: broken}))
    assert main(["export-best", "--study", "broken"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert error.startswith("optimize export-best: error: trial 3: system attr 'optimize:history' is not a per-epoch")
    assert "{'epoch': [1, 2, 3], 'loss': [0.5]}" in error


def test_counts_are_written_to_csv_as_integers():
    """A history's epochs came out as 1.0, 2.0, and a trial table's param_count as 7637.0 whenever one trial
    lacked it (pandas makes floats of a column with an empty cell): the same field looked different per study."""
    from optimize.results.frame import whole_numbers

    frame = pd.DataFrame(
        {"epoch": [1.0, 2.0], "param_count": [7637.0, None], "val_jaccard": [0.5, 1.0], "rank": [1, 2]}
    )
    assert whole_numbers(frame).to_csv(index=False).splitlines() == [
        "epoch,param_count,val_jaccard,rank",
        "1,7637,0.5,1",
        "2,,1.0,2",
    ]
    assert frame["epoch"].dtype == float  # the caller's frame is left as it was
