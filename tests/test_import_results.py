"""`optimize import-results`: earlier searches' results as COMPLETE trials, through the real command line.

The users' files are written here in their scripts' exact columns and spellings (`best_val_jacard`,
`loss_function`, `history_<arch>_bs<bs>_dr<dropout>_<loss>.csv` with Keras' `val_jacard_coef`); our own
format comes from a real `optimize run` and `optimize export-best`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optimize.results.record import HISTORY_ATTR, IMPORTED_FROM, IMPORTED_HASH, read_record
from optimize.search.config import load_config
from optimize.search.study import make_sampler
from tests.conftest import TINY_STUDY, run_cli, use_studies_folder, write_tiny_study

USERS_HEADER = (
    "architecture,batch_size,dropout,loss_function,learning_rate,best_val_jacard,best_epoch,total_epochs,"
    "final_val_jacard,checkpoint_path"
)
USERS_ROWS = [
    # Imported: the tiny study searches architecture (unet, attention_unet), loss (dice, combined) and a
    # learning rate in [1e-5, 1e-2]; it trains with batch_size 8 and the default dropout 0.0.
    "unet,8,0.0,dice,0.001,0.31,2,3,0.2,run/model_unet_bs8_dr0.0_dice.hdf5",
    "Attention_UNet,8,0.0,combined,5e-05,0.42,3,3,0.42,run/model_Attention_UNet_bs8_dr0.0_combined.hdf5",
    # Skipped, each for its own reason.
    "attention_resunet,8,0.0,combined,0.0001,0.2,1,3,0.1,x.hdf5",
    "unet,16,0.0,dice,0.001,0.25,1,3,0.1,x.hdf5",
    "unet,8,0.3,dice,0.001,0.24,1,3,0.1,x.hdf5",
    "unet,8,0.0,focal,0.001,0.23,1,3,0.1,x.hdf5",
    "unet,8,0.0,dice,0.05,0.22,1,3,0.1,x.hdf5",
]
KERAS_HISTORY_HEADER = "loss,accuracy,jacard_coef,dice_coef,val_loss,val_accuracy,val_jacard_coef,val_dice_coef,lr"


def keras_history(val_jaccards: list[float]) -> str:
    """A history as the users' scripts write it: `pd.DataFrame(history.history).to_csv(index=False)`."""
    rows = [f"0.8,0.5,0.1,0.2,0.9,0.9,{value},0.3,1e-04" for value in val_jaccards]
    return "\n".join([KERAS_HISTORY_HEADER, *rows]) + "\n"


def users_folder(folder: Path, rows: list[str] = USERS_ROWS, value_column: str = "best_val_jacard") -> Path:
    """A users' search folder: search_results_final.csv and a history per configuration beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    header = USERS_HEADER.replace("best_val_jacard", value_column)
    (folder / "search_results_final.csv").write_text("\n".join([header, *rows]) + "\n")
    (folder / "history_unet_bs8_dr0.0_dice.csv").write_text(keras_history([0.1, 0.31, 0.2]))
    (folder / "history_Attention_UNet_bs8_dr0.0_combined.csv").write_text(keras_history([0.2, 0.3, 0.42]))
    return folder / "search_results_final.csv"


def import_results(study: str, path: Path, *extra: str):
    return run_cli("import-results", "--study", study, str(path), *extra)


def load(studies: Path, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{studies / f'{name}.db'}")


def counts(stdout: str) -> dict[str, int]:
    """The summary's counts: rows read, imported, skipped, already present."""
    found = {}
    for label in ("rows read", "imported", "skipped", "already present"):
        match = re.search(rf"^  {label} +(\d+)", stdout, re.MULTILINE)
        assert match, stdout
        found[label] = int(match.group(1))
    return found


def one_line_error(result, *fragments: str) -> str:
    """The command failed with exactly one line on stderr holding every fragment, and no traceback."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_users_results_become_complete_trials_with_their_histories(studies, tmp_path):
    csv = users_folder(tmp_path / "old")
    result = import_results("tiny", csv, "--allow-different-data")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    warning = re.search(r"^warning: .*does not say which images its trials trained on.*$", out, re.MULTILINE)
    assert warning and out.index(warning.group()) < out.index("rows read"), out
    assert counts(out) == {"rows read": 7, "imported": 2, "skipped": 5, "already present": 0}
    assert "(trials 0 to 1)" in out
    reasons = {
        4: "architecture = 'attention_resunet' is outside the study's space",
        5: "batch_size = 16, but the study trains with batch_size = 8",
        6: "dropout = 0.3, but the study trains with dropout = 0.0",
        7: "loss_function = 'focal' is outside the study's space",
        8: "learning_rate = 0.05 is outside the study's space",
    }
    for row, reason in reasons.items():
        assert f"row {row}: skipped: {reason}" in out, out

    trials = load(studies).get_trials()
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * 2
    first, second = trials
    assert first.params == {"architecture": "unet", "loss": "dice", "learning_rate": 0.001}
    assert second.params == {"architecture": "attention_unet", "loss": "combined", "learning_rate": 5e-05}
    assert (first.value, second.value) == (0.31, 0.42)
    assert first.intermediate_values == {1: 0.1, 2: 0.31, 3: 0.2}
    assert second.intermediate_values == {1: 0.2, 2: 0.3, 3: 0.42}
    assert first.user_attrs[IMPORTED_FROM] == "search_results_final.csv:2"
    assert second.user_attrs[IMPORTED_FROM] == "search_results_final.csv:3"
    record = read_record(first)
    assert (record.best_epoch, record.epochs_run, record.final_val_jaccard) == (2, 3, 0.2)
    assert (record.best_val_jaccard, record.imported_from) == (0.31, "search_results_final.csv:2")
    assert first.system_attrs[HISTORY_ATTR]["val_jaccard"] == [0.1, 0.31, 0.2]
    assert first.system_attrs[HISTORY_ATTR]["lr"] == [1e-4] * 3
    config = load_config("tiny")
    assert first.distributions == {name: config.search.distributions()[name] for name in first.params}

    status = run_cli("status", "--study", "tiny")
    assert "COMPLETE 2" in status.stdout, status.stdout


def test_a_history_of_a_run_that_diverged_is_imported_with_its_nan_epochs(studies, tmp_path):
    """A Keras history holds `nan` once a run diverges; its finite epochs still become intermediate values."""
    csv = users_folder(tmp_path / "old", rows=USERS_ROWS[:1])
    history = keras_history([0.1, 0.31, 0.2]).splitlines()
    history[3] = "nan,0.5,nan,nan,nan,0.9,nan,nan,1e-04"
    (csv.parent / "history_unet_bs8_dr0.0_dice.csv").write_text("\n".join(history) + "\n")

    result = import_results("tiny", csv, "--allow-different-data")

    assert result.returncode == 0, result.stderr
    assert counts(result.stdout)["imported"] == 1
    (trial,) = load(studies).get_trials()
    assert trial.intermediate_values == {1: 0.1, 2: 0.31}
    assert trial.system_attrs[HISTORY_ATTR]["val_jaccard"] == [0.1, 0.31, None]
    assert trial.system_attrs[HISTORY_ATTR]["loss"] == [0.8, 0.8, None]


def test_a_history_with_another_number_of_epochs_than_the_row_is_another_run(studies, tmp_path):
    """A repeat of a configuration that reached the same best val Jaccard but ran another number of epochs: its
    history was attached to the row, whose `total_epochs` it contradicts."""
    csv = users_folder(tmp_path / "old", rows=[USERS_ROWS[0].replace(",0.31,2,3,", ",0.31,2,5,")])
    result = import_results("tiny", csv, "--allow-different-data")
    assert result.returncode == 0, result.stderr
    assert counts(result.stdout)["imported"] == 1
    assert (
        "note: row 2: history_unet_bs8_dr0.0_dice.csv is another run of the same configuration (its 3 epochs, "
        "the row's 5); imported without per-epoch values" in result.stdout
    )
    (trial,) = load(studies).get_trials()
    assert trial.intermediate_values == {} and HISTORY_ATTR not in trial.system_attrs


def test_an_import_that_uses_up_the_budget_says_so(studies, tmp_path):
    write_tiny_study(studies, max_trials=1)
    result = import_results("tiny", users_folder(tmp_path / "old"), "--allow-different-data")
    assert result.returncode == 0, result.stderr
    assert counts(result.stdout)["imported"] == 2
    assert result.stdout.rstrip().endswith(
        "note: the study's budget is used: 2 of max_trials = 1 trials, imported ones included; `optimize run` "
        f"starts none until [budget] max_trials in {studies / 'tiny.toml'} is raised"
    )


def test_the_usual_spelling_loss_type_and_lr_named_histories(studies, tmp_path):
    """`best_val_jaccard`, the older scripts' `loss_type` and `history_lr<lr>_bs<bs>_dr<dropout>_<loss>.csv`; a
    history of another run of the same configuration (a random search's repeat) is not attached."""
    folder = tmp_path / "older"
    folder.mkdir()
    (folder / "search_results_final.csv").write_text(
        "learning_rate,batch_size,dropout,loss_type,architecture,best_val_jaccard\n"
        "0.0002,8,0.0,combined,U-Net,0.164\n"
        "0.0001,8,0.0,dice_loss,unet,0.125\n"
        "0.0001,8,0.0,dice_loss,unet,0.121\n"
    )
    (folder / "history_lr0.0002_bs8_dr0.0_combined.csv").write_text(keras_history([0.05, 0.164]))
    (folder / "history_lr0.0001_bs8_dr0.0_dice_loss.csv").write_text(keras_history([0.125, 0.1]))
    result = import_results("tiny", folder / "search_results_final.csv", "--allow-different-data")
    assert result.returncode == 0, result.stderr
    assert counts(result.stdout)["imported"] == 3
    assert "note: row 4: history_lr0.0001_bs8_dr0.0_dice_loss.csv is another run" in result.stdout
    trials = load(studies).get_trials()
    assert [trial.params["architecture"] for trial in trials] == ["unet"] * 3
    assert [trial.params["loss"] for trial in trials] == ["combined", "dice", "dice"]
    assert [trial.value for trial in trials] == [0.164, 0.125, 0.121]
    assert [trial.intermediate_values for trial in trials] == [{1: 0.05, 2: 0.164}, {1: 0.125, 2: 0.1}, {}]


def test_importing_twice_adds_nothing(studies, tmp_path):
    csv = users_folder(tmp_path / "old")
    assert import_results("tiny", csv, "--allow-different-data").returncode == 0
    before = [(trial.number, trial.params, trial.value) for trial in load(studies).get_trials()]
    again = import_results("tiny", csv, "--allow-different-data")
    assert again.returncode == 0, again.stderr
    assert counts(again.stdout) == {"rows read": 7, "imported": 0, "skipped": 5, "already present": 2}
    assert "row 2: already present as trial 0" in again.stdout
    assert "row 3: already present as trial 1" in again.stdout
    assert [(trial.number, trial.params, trial.value) for trial in load(studies).get_trials()] == before

    # The same rows saved again by a spreadsheet, numbers written otherwise: other cells, the same results.
    resaved = csv.with_name("resaved.csv")
    resaved.write_text(csv.read_text().replace(",0.31,", ",0.310,").replace(",5e-05,", ",0.00005,"))
    third = import_results("tiny", resaved, "--allow-different-data")
    assert third.returncode == 0, third.stderr
    assert counts(third.stdout) == {"rows read": 7, "imported": 0, "skipped": 5, "already present": 2}
    assert [(trial.number, trial.params, trial.value) for trial in load(studies).get_trials()] == before

    # The same rows in another order and column order, in a copy elsewhere, are still the same rows.
    lines = csv.read_text().splitlines()
    columns = lines[0].split(",")
    order = list(reversed(range(len(columns))))
    shuffled = [",".join(line.split(",")[index] for index in order) for line in [lines[0], *reversed(lines[1:])]]
    copy = tmp_path / "copy" / "search_results.csv"
    copy.parent.mkdir()
    copy.write_text("\n".join(shuffled) + "\n")
    third = import_results("tiny", copy, "--allow-different-data")
    assert third.returncode == 0, third.stderr
    assert counts(third.stdout) == {"rows read": 7, "imported": 0, "skipped": 5, "already present": 2}
    assert len(load(studies).get_trials()) == 2


def test_users_file_needs_the_data_confirmed(studies, tmp_path):
    result = import_results("tiny", users_folder(tmp_path / "old"))
    one_line_error(result, "search_results_final.csv does not say which images", "--allow-different-data")
    assert not (studies / "tiny.db").exists()


BAD_FILES = {
    "missing value column": (
        "architecture,batch_size,dropout,loss_function,learning_rate,best_epoch\nunet,8,0.0,dice,0.001,2\n",
        ("row 1, column best_val_jacard", "missing column best_val_jacard or best_val_jaccard"),
    ),
    "missing searched column": (
        "architecture,batch_size,dropout,learning_rate,best_val_jacard\nunet,8,0.0,0.001,0.3\n",
        ("row 1, column loss", "missing column loss or loss_function or loss_type", "the study searches loss"),
    ),
    "unknown architecture": (
        USERS_HEADER + "\n" + USERS_ROWS[0] + "\nSegFormer,8,0.0,dice,0.001,0.3,1,3,0.2,x.hdf5\n",
        ("row 3, column architecture", "unknown architecture 'SegFormer'", "attention_resunet"),
    ),
    "unknown loss": (
        USERS_HEADER + "\nunet,8,0.0,lovasz,0.001,0.3,1,3,0.2,x.hdf5\n",
        ("row 2, column loss_function", "unknown loss 'lovasz'"),
    ),
    "batch size not an integer": (
        USERS_HEADER + "\n" + USERS_ROWS[0] + "\nunet,eight,0.0,dice,0.001,0.3,1,3,0.2,x.hdf5\n",
        ("row 3, column batch_size", "'eight' is not an integer"),
    ),
    "fractional batch size": (
        USERS_HEADER + "\nunet,8.5,0.0,dice,0.001,0.3,1,3,0.2,x.hdf5\n",
        ("row 2, column batch_size", "'8.5' is not an integer"),
    ),
    "value not a number": (
        USERS_HEADER + "\nunet,8,0.0,dice,0.001,high,1,3,0.2,x.hdf5\n",
        ("row 2, column best_val_jacard", "'high' is not a number in [0, 1]"),
    ),
    "value outside [0, 1]": (
        USERS_HEADER + "\nunet,8,0.0,dice,0.001,31.0,1,3,0.2,x.hdf5\n",
        ("row 2, column best_val_jacard", "'31.0' is not a number in [0, 1]"),
    ),
    "row of the wrong length": (
        USERS_HEADER + "\nunet,8,0.0,dice\n",
        ("row 2:", "4 cells, but the header has 10 columns"),
    ),
    "empty file": ("", ("row 1: empty; expected a header row",)),
    "header only": (USERS_HEADER + "\n", ("holds no rows, only its header (row 1)",)),
    "best epoch after the last": (
        USERS_HEADER + "\n" + USERS_ROWS[0] + "\nunet,8,0.0,dice,0.002,0.3,5,3,0.2,x.hdf5\n",
        ("row 3, column best_epoch", "5 is after the last epoch, total_epochs 3"),
    ),
    "no epochs run": (
        USERS_HEADER + "\nunet,8,0.0,dice,0.001,0.3,0,0,0.2,x.hdf5\n",
        ("row 2, column total_epochs", "'0' is not an integer of at least 1"),
    ),
    "negative best epoch": (
        USERS_HEADER + "\nunet,8,0.0,dice,0.001,0.3,-1,3,0.2,x.hdf5\n",
        ("row 2, column best_epoch", "'-1' is not an integer of at least 0"),
    ),
    "final value outside [0, 1]": (
        USERS_HEADER + "\nunet,8,0.0,dice,0.001,0.3,1,3,1.5,x.hdf5\n",
        ("row 2, column final_val_jacard", "'1.5' is not a number in [0, 1]"),
    ),
    "not a CSV": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", ("not a CSV text file",)),
    "semicolons": (
        USERS_HEADER.replace(",", ";") + "\n" + USERS_ROWS[0].replace(",", ";") + "\n",
        ("row 1: one column, its cells separated by ';'; expected commas between cells",),
    ),
    # Read leniently, the open quote swallowed rows 3 and 4 into row 2's last cell: 1 row read, exit 0.
    "a quote left open": (
        USERS_HEADER + '\nunet,8,0.0,dice,0.001,0.3,1,3,0.2,"x.hdf5\n' + USERS_ROWS[0] + "\n" + USERS_ROWS[1] + "\n",
        ("line 4: not a CSV file: a quoted cell is never closed",),
    ),
}


@pytest.fixture(scope="module")
def imported_database(tmp_path_factory) -> Path:
    """The tiny study's SQLite file after importing the users' two good rows (made once, copied by each test)."""
    folder = tmp_path_factory.mktemp("imported") / "studies"
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_studies_folder(folder, monkeypatch)
        result = import_results("tiny", users_folder(folder.parent / "good"), "--allow-different-data")
    assert result.returncode == 0, result.stderr
    return folder / "tiny.db"


def refused_unchanged(studies: Path, imported_database: Path, bad: Path, *fragments: str) -> None:
    """Importing `bad` into a copy of the imported study is refused in one line holding every fragment, before
    anything is written: the storage stays byte-identical, with the trials it had."""
    database = studies / "tiny.db"
    shutil.copyfile(imported_database, database)
    before = hashlib.sha256(database.read_bytes()).hexdigest()
    result = import_results("tiny", bad, "--allow-different-data")
    one_line_error(result, f"optimize import-results: error: {bad}", *fragments)
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before
    assert len(load(studies).get_trials()) == 2


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_bad_files_are_refused_whole_in_one_line(studies, tmp_path, case, imported_database):
    content, fragments = BAD_FILES[case]
    bad = tmp_path / "bad" / "search_results_final.csv"
    bad.parent.mkdir()
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    refused_unchanged(studies, imported_database, bad, *fragments)


EXPORT_HEADER = "rank,number,state,value,val_jaccard,architecture,loss,learning_rate,best_epoch,epochs_run"
EXPORT_ROWS = [
    "1,0,complete,0.4,0.4,unet,dice,0.001,2,3",
    "2,1,Complete,0.35,0.35,attention_unet,combined,0.0005,3,3",
    "3,2,pruned,,0.2,unet,dice,0.002,1,1",
]
EXPORT_HISTORIES = {0: [0.1, 0.4, 0.3], 1: [0.2, 0.3, 0.35], 2: [0.2]}
"""Each trial's val Jaccard per epoch, as export-best's `histories/trial_NNNN.csv` hold it."""


def export_folder(folder: Path, rows: list[str] = EXPORT_ROWS, histories: dict = EXPORT_HISTORIES) -> Path:
    """An export-best folder written by hand: search_results.csv and histories/, without the JSON."""
    (folder / "histories").mkdir(parents=True)
    (folder / "search_results.csv").write_text("\n".join([EXPORT_HEADER, *rows]) + "\n")
    for number, values in histories.items():
        lines = [f"{epoch},0.5,0.6,0.3,{value},0.001,1.5" for epoch, value in enumerate(values, start=1)]
        text = "\n".join(["epoch,loss,val_loss,jaccard,val_jaccard,lr,seconds", *lines]) + "\n"
        (folder / "histories" / f"trial_{number:04d}.csv").write_text(text)
    return folder / "search_results.csv"


def test_export_states_are_read_in_any_case(studies, tmp_path):
    """`complete` and `Complete` are COMPLETE trials, `pruned` a PRUNED one, skipped as such."""
    result = import_results("tiny", export_folder(tmp_path / "export"), "--allow-different-data")
    assert result.returncode == 0, result.stderr
    assert counts(result.stdout) == {"rows read": 3, "imported": 2, "skipped": 1, "already present": 0}
    assert "row 4: skipped: a PRUNED trial; only COMPLETE trials are imported" in result.stdout
    trials = load(studies).get_trials()
    assert [(trial.state, trial.value) for trial in trials] == [(TrialState.COMPLETE, 0.4), (TrialState.COMPLETE, 0.35)]
    assert trials[0].intermediate_values == {1: 0.1, 2: 0.4, 3: 0.3}
    assert (read_record(trials[1]).best_epoch, read_record(trials[1]).epochs_run) == (3, 3)


BAD_EXPORTS = {
    "unknown state": (
        [EXPORT_ROWS[0], "2,1,done,0.35,0.35,attention_unet,combined,0.0005,3,3"],
        EXPORT_HISTORIES,
        ("row 3, column state", "'done' is not a trial state", "COMPLETE"),
    ),
    "best epoch after the last": (
        ["1,0,COMPLETE,0.4,0.4,unet,dice,0.001,4,3"],
        EXPORT_HISTORIES,
        ("row 2, column best_epoch", "4 is after the last epoch, epochs_run 3"),
    ),
    "history of another export": (
        EXPORT_ROWS,
        {**EXPORT_HISTORIES, 1: [0.2, 0.5]},
        ("row 3, column val_jaccard", "0.35 is not the best val_jaccard of", "trial_0001.csv (0.5)"),
    ),
    "negative trial number": (
        ["1,-1,COMPLETE,0.4,0.4,unet,dice,0.001,2,3"],
        EXPORT_HISTORIES,
        ("row 2, column number", "'-1' is not an integer of at least 0"),
    ),
    "header only": ([], EXPORT_HISTORIES, ("holds no rows",)),
}


@pytest.mark.parametrize("case", BAD_EXPORTS, ids=list(BAD_EXPORTS))
def test_bad_export_files_are_refused_whole_in_one_line(studies, tmp_path, case, imported_database):
    rows, histories, fragments = BAD_EXPORTS[case]
    bad = export_folder(tmp_path / "export", rows, histories)
    refused_unchanged(studies, imported_database, bad, *fragments)


def test_bad_history_file_is_refused_naming_it(studies, tmp_path):
    csv = users_folder(tmp_path / "old")
    history = csv.parent / "history_unet_bs8_dr0.0_dice.csv"
    history.write_text(KERAS_HISTORY_HEADER + "\n0.8,0.5,0.1,0.2,0.9,0.9,zero,0.3,1e-04\n")
    result = import_results("tiny", csv, "--allow-different-data")
    one_line_error(result, f"{history} row 2, column val_jacard_coef", "'zero' is not a number")
    assert not (studies / "tiny.db").exists()


def test_export_best_round_trip_into_a_new_study(studies, tmp_path):
    """A real study's export-best imported into a new study of the same data: its COMPLETE trials come back
    with their parameters, values, intermediate values and histories; the other states are skipped."""
    run = run_cli("run", "--study", "tiny", "--n-trials", "4")
    assert run.returncode == 0, run.stderr
    export = run_cli("export-best", "--study", "tiny", "--out", str(tmp_path / "export"))
    assert export.returncode == 0, export.stderr
    write_tiny_study(studies, "copy")
    csv = tmp_path / "export" / "search_results.csv"

    result = import_results("copy", csv)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stdout  # the same data: nothing to confirm
    source = load(studies, "tiny").get_trials()
    complete = [trial for trial in source if trial.state == TrialState.COMPLETE]
    others = [trial for trial in source if trial.state != TrialState.COMPLETE]
    assert complete, run.stdout
    assert counts(result.stdout) == {
        "rows read": len(source),
        "imported": len(complete),
        "skipped": len(others),
        "already present": 0,
    }
    for trial in others:
        assert f"a {trial.state.name} trial; only COMPLETE trials are imported" in result.stdout
    imported = load(studies, "copy").get_trials()
    assert len(imported) == len(complete)
    by_value = sorted(complete, key=lambda trial: (-trial.value, trial.number))
    for original, copy in zip(by_value, imported, strict=True):
        assert copy.params == original.params
        assert copy.value == pytest.approx(original.value)
        assert copy.intermediate_values == pytest.approx(original.intermediate_values, abs=1e-6)
        assert copy.system_attrs[HISTORY_ATTR]["val_jaccard"] == original.system_attrs[HISTORY_ATTR]["val_jaccard"]
        assert read_record(copy).best_epoch == read_record(original).best_epoch
        assert copy.user_attrs[IMPORTED_FROM].startswith("search_results.csv:")
        assert copy.user_attrs[IMPORTED_HASH]

    again = import_results("copy", csv, "--allow-different-data")
    assert again.returncode == 0, again.stderr
    assert counts(again.stdout)["already present"] == len(complete) and counts(again.stdout)["imported"] == 0
    assert "note: --allow-different-data was not needed: the file's data match the study's" in again.stdout
    assert len(load(studies, "copy").get_trials()) == len(complete)

    # The study's own export into itself: its COMPLETE trials are there already, as themselves.
    itself = import_results("tiny", csv)
    assert itself.returncode == 0, itself.stderr
    assert counts(itself.stdout)["imported"] == 0 and counts(itself.stdout)["already present"] == len(complete)
    assert len(load(studies, "tiny").get_trials()) == len(source)

    # Another data set: refused until confirmed.
    (studies / "other.toml").write_text(
        TINY_STUDY.replace("seed = 1", "seed = 2").format(max_epochs=3, max_trials=8, heartbeat=60, grace=120)
    )
    refused = import_results("other", csv)
    one_line_error(refused, "trained on other data", "different", "--allow-different-data")
    assert not (studies / "other.db").exists()
    # Allowed, but the storage cannot be opened: nothing imported, so no "imported all the same".
    unreachable = import_results(
        "other", csv, "--allow-different-data", "--storage", "postgresql://nobody@127.0.0.1:1/x"
    )
    assert unreachable.returncode != 0 and "imported all the same" not in unreachable.stdout, unreachable.stdout


def no_enqueue_study(folder: Path, name: str) -> None:
    """The tiny study without its [[enqueue]] baselines, so that the sampler suggests the first trial."""
    text = TINY_STUDY.split("[[enqueue]]")[0].format(max_epochs=2, max_trials=8, heartbeat=60, grace=120)
    (folder / f"{name}.toml").write_text(text)


def test_tpe_uses_the_imported_trials_from_its_first_suggestion(studies, tmp_path):
    """With `n_startup_trials = 2` and 3 imported trials, the first trial `optimize run` starts is drawn by
    multivariate TPE (it stores its relative sample as the system attr `tpe:relative_params`); a study
    without them starts at random."""
    no_enqueue_study(studies, "warm")
    rows = [*USERS_ROWS[:2], "attention_unet,8,0.0,dice,0.003,0.36,1,3,0.3,x.hdf5"]
    assert import_results("warm", users_folder(tmp_path / "old", rows), "--allow-different-data").returncode == 0
    run = run_cli("run", "--study", "warm", "--n-trials", "1")
    assert run.returncode == 0, run.stderr
    trials = load(studies, "warm").get_trials()
    assert [trial.user_attrs.get(IMPORTED_FROM) is not None for trial in trials] == [True, True, True, False]
    assert any(key.startswith("tpe:relative_params") for key in trials[3].system_attrs), trials[3].system_attrs

    # The contrast, in-process: the same sampler on an empty study draws its first trial at random.
    config = load_config(str(studies / "warm.toml"))
    cold = optuna.create_study(sampler=make_sampler(config.sampler, config.search), direction="maximize")
    config.search.suggest(cold.ask())
    assert not any(key.startswith("tpe:relative_params") for key in cold.get_trials()[0].system_attrs)
    warm = optuna.load_study(
        study_name="warm",
        storage=f"sqlite:///{studies / 'warm.db'}",
        sampler=make_sampler(config.sampler, config.search),
    )
    relative = warm.sampler.infer_relative_search_space(warm, warm.get_trials()[0])
    assert set(relative) == set(config.search.names())


def test_export_files_json_without_data_stats_counts_as_unknown(studies, tmp_path):
    """export-best's file whose best_hyperparameters.json is missing: its data are unknown, as the users' are."""
    csv = users_folder(tmp_path / "old")
    assert import_results("tiny", csv, "--allow-different-data").returncode == 0
    export = run_cli("export-best", "--study", "tiny", "--out", str(tmp_path / "export"))
    assert export.returncode == 0, export.stderr
    (tmp_path / "export" / "best_hyperparameters.json").unlink()
    write_tiny_study(studies, "copy")
    result = import_results("copy", tmp_path / "export" / "search_results.csv")
    one_line_error(result, "does not say which images")
    summary = json.dumps({"data_stats": None})
    (tmp_path / "export" / "best_hyperparameters.json").write_text(summary)
    confirmed = import_results("copy", tmp_path / "export" / "search_results.csv", "--allow-different-data")
    assert confirmed.returncode == 0, confirmed.stderr
    assert counts(confirmed.stdout)["imported"] == 2
