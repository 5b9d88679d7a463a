"""A study never mixes settings or data: its fingerprint is recorded at creation, and workers that differ are refused.

The CLI tests share one tiny study made from a PNG folder (2 trials of 1 epoch); each copies it first.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time
import tomllib
from contextlib import closing
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from data import write_microbeads
from losses import LOSS_SETTINGS
from optimize.cli import build_parser, existing_study, main
from optimize.results.frame import stored_config
from optimize.search.config import parse_config
from optimize.search.fingerprint import StudyMismatchError, differences, refusal, safe_changes, study_fingerprint
from optimize.search.study import create_or_join, record_study_attrs, study_objective
from optimize.storage import open_storage
from optimize.training.dataset import load_study_data
from tests.conftest import OPTIMIZE, TINY_STUDY, run_cli

SYNTHETIC = "[data.synthetic]\nn_images = 24\nsize = 32\nseed = 1\n"


def tiny_text(*, data_dir: str | None = None, max_trials: int = 2, max_epochs: int = 1, heartbeat: int = 60) -> str:
    """The tests' tiny study, on a PNG folder (relative to the config) when `data_dir` is given."""
    text = TINY_STUDY.format(max_epochs=max_epochs, max_trials=max_trials, heartbeat=heartbeat, grace=120)
    return text.replace(SYNTHETIC, f'dir = "{data_dir}"\n') if data_dir else text


def tiny_config(text: str, path: Path = Path("studies/tiny.toml")):
    return parse_config(tomllib.loads(text), path=path, text=text)


def database_rows(db: Path) -> dict[str, list]:
    """Every row of every table of an SQLite study database: trials, states, params, values, all attrs."""
    with closing(sqlite3.connect(db)) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {table: sorted(map(repr, connection.execute(f"SELECT * FROM {table}"))) for table in sorted(tables)}


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture(scope="module")
def made_study(tmp_path_factory) -> Path:
    """A folder with `beads/` (24 PNG pairs of 32 px) and `studies/tiny.toml` + `tiny.db` after one run."""
    root = tmp_path_factory.mktemp("fingerprint")
    write_microbeads(root / "beads", 24, size=32, seed=1)
    (root / "studies").mkdir()
    (root / "studies" / "tiny.toml").write_text(tiny_text(data_dir="../beads"))
    result = run_cli("run", "--study", "tiny", env={"OPTIMIZE_STUDIES_DIR": str(root / "studies")})
    assert result.returncode == 0, result.stderr
    assert "created study tiny" in result.stdout
    return root


@pytest.fixture
def study_copy(made_study, tmp_path, monkeypatch) -> Path:
    """A private copy of `made_study`, its studies folder made the current one."""
    root = tmp_path / "copy"
    shutil.copytree(made_study, root)
    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(root / "studies"))
    monkeypatch.delenv("OPTIMIZE_STORAGE", raising=False)
    return root


def test_a_changed_training_setting_is_refused_and_the_study_is_unchanged(study_copy):
    config = study_copy / "studies" / "tiny.toml"
    config.write_text(config.read_text().replace("base_filters = 4", "base_filters = 8"))
    before = database_rows(study_copy / "studies" / "tiny.db")
    assert "fingerprint" in repr(before["study_user_attributes"]) and len(before["trials"]) == 2

    result = run_cli("run", "--study", "tiny")

    assert result.returncode == 1
    line = one_line(result.stderr)
    assert re.search(r"study tiny was created with \[training\] base_filters 4; \S*tiny\.toml now says 8;", line), line
    assert "--new-study" in line
    assert database_rows(study_copy / "studies" / "tiny.db") == before


def test_different_data_is_refused_naming_the_files_and_the_study_is_unchanged(study_copy, made_study):
    other = study_copy / "other_beads"
    shutil.copytree(study_copy / "beads", other)
    write_microbeads(study_copy / "extra", 1, size=32, seed=7)
    for folder in ("images", "masks"):
        shutil.copy(study_copy / "extra" / folder / "bead_0000.png", other / folder / "added.png")
    before = database_rows(study_copy / "studies" / "tiny.db")

    result = run_cli("run", "--study", "tiny", "--data", str(other))

    assert result.returncode == 1
    line = one_line(result.stderr)
    assert f"was created with other data files: {other} has images/added.png, masks/added.png added" in line, line
    assert f"(the study's data: {made_study / 'beads'})" in line
    assert database_rows(study_copy / "studies" / "tiny.db") == before


def test_safe_changes_join_and_say_so_without_rewriting_the_stored_attrs(study_copy):
    config = study_copy / "studies" / "tiny.toml"
    config.write_text(tiny_text(data_dir="../beads", max_trials=3, heartbeat=30).replace("tiny test", "tiny, more"))
    url = f"sqlite:///{study_copy / 'studies' / 'tiny.db'}"
    stored = optuna.load_study(study_name="tiny", storage=url).user_attrs

    result = run_cli("run", "--study", "tiny")

    assert result.returncode == 0, result.stderr
    assert (
        'joined study tiny: description "tiny test study" → "tiny, more study", [budget] max_trials 2 → 3, '
        "[recovery] heartbeat_interval 60 → 30 differ from when it was created; safe to join"
    ) in result.stdout
    study = optuna.load_study(study_name="tiny", storage=url)
    assert len(study.trials) == 3
    assert study.user_attrs == {**stored, "max_trials": 3}
    assert study.user_attrs["config_toml"] != config.read_text()


def test_new_study_starts_over_under_a_new_name_and_leaves_the_old_one(study_copy, capsys):
    studies = study_copy / "studies"
    config = studies / "tiny.toml"
    original = config.read_text()
    config.write_text(original.replace("base_filters = 4", "base_filters = 8"))
    old = database_rows(studies / "tiny.db")

    result = run_cli("run", "--study", "tiny", "--new-study", "tiny_wide", "--n-trials", "1")

    assert result.returncode == 0, result.stderr
    assert "created study tiny_wide" in result.stdout
    assert database_rows(studies / "tiny.db") == old
    wide = optuna.load_study(study_name="tiny_wide", storage=f"sqlite:///{studies / 'tiny_wide.db'}")
    assert [trial.state for trial in wide.trials] == [TrialState.COMPLETE, TrialState.WAITING]  # 2nd enqueued
    assert wide.user_attrs["fingerprint"]["config"]["training"]["base_filters"] == 8

    assert main(["status", "--study", "tiny_wide"]) == 0
    assert "study tiny_wide: 2 trials" in capsys.readouterr().out
    assert main(["export-best", "--study", "tiny_wide"]) == 0
    best = json.loads((studies / "tiny_wide" / "export" / "best_hyperparameters.json").read_text())
    assert best["study"] == "tiny_wide" and best["settings"]["base_filters"] == 8
    assert main(["report", "--study", "tiny_wide"]) == 0
    assert (studies / "tiny_wide" / "report" / "REPORT.md").is_file()
    study, _ = existing_study(build_parser().parse_args(["dashboard", "--study", "tiny_wide"]))
    assert study.study_name == "tiny_wide" and len(study.trials) == 2
    capsys.readouterr()

    config.write_text(original)
    wide_rows = database_rows(studies / "tiny_wide.db")
    assert main(["run", "--study", "tiny", "--new-study", "tiny_wide"]) == 1
    line = one_line(capsys.readouterr().err)
    assert re.search(r"study tiny_wide was created with \[training\] base_filters 8; \S*tiny\.toml now says 4", line)
    assert database_rows(studies / "tiny_wide.db") == wide_rows
    with pytest.raises(SystemExit) as bad_name:
        main(["run", "--study", "tiny", "--new-study", "../elsewhere"])
    assert bad_name.value.code == 2
    assert "--new-study: expected a study name" in capsys.readouterr().err


def test_on_postgresql_a_worker_with_other_data_is_refused_while_the_first_keeps_running(tmp_path, postgres_url):
    write_microbeads(tmp_path / "beads", 24, size=32, seed=1)
    other = tmp_path / "other_beads"
    shutil.copytree(tmp_path / "beads", other)
    (other / "masks" / "bead_0005.png").unlink()
    (other / "images" / "bead_0005.png").unlink()
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "tiny.toml").write_text(tiny_text(data_dir="../beads", max_trials=5, max_epochs=2))
    env = {"OPTIMIZE_STUDIES_DIR": str(tmp_path / "studies"), "OPTIMIZE_STORAGE": postgres_url}
    with open(tmp_path / "first.err", "w") as first_err:
        first = subprocess.Popen(
            [OPTIMIZE, "run", "--study", "tiny"],
            stdout=subprocess.PIPE,
            stderr=first_err,
            text=True,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        )
        lines: list[str] = []
        created = threading.Event()

        def read() -> None:
            for line in first.stdout:
                lines.append(line)
                if line.startswith("created study tiny"):
                    created.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert created.wait(180), "".join(lines)

        started = time.monotonic()
        second = run_cli("run", "--study", "tiny", "--data", str(other), env=env)
        refused_after = time.monotonic() - started
        first_still_running = first.poll() is None
        first.wait(300)
        reader.join(10)

    assert second.returncode == 1
    line = one_line(second.stderr)
    assert f"other data files: {other} has images/bead_0005.png, masks/bead_0005.png removed" in line, line
    assert refused_after < 60
    assert first_still_running, "".join(lines)
    assert first.returncode == 0, (tmp_path / "first.err").read_text()
    assert "Traceback" not in (tmp_path / "first.err").read_text()
    study = optuna.load_study(study_name="tiny", storage=postgres_url)
    assert len(study.trials) == 5
    assert all(trial.state in (TrialState.COMPLETE, TrialState.PRUNED) for trial in study.trials)
    assert study.user_attrs["data_stats"]["source"] == str(tmp_path / "beads")
    assert study.user_attrs["fingerprint"]["data"]["n_files"] == 48


def test_workers_creating_one_study_at_the_same_instant_never_both_win(postgres_url):
    configs = [tiny_config(tiny_text()), tiny_config(tiny_text().replace("base_filters = 4", "base_filters = 8"))]
    data = load_study_data(configs[0])
    for attempt in range(3):
        name = f"race{attempt}"
        barrier = threading.Barrier(2)
        outcomes: list[str | None] = [None, None]

        def worker(index: int, name: str = name, barrier: threading.Barrier = barrier, outcomes: list = outcomes):
            config = dataclasses.replace(configs[index], name=name)
            storage = open_storage(postgres_url)
            barrier.wait()
            study, created = create_or_join(config, storage)
            try:
                outcomes[index] = record_study_attrs(study, config, data, created=created)
            except StudyMismatchError as error:
                outcomes[index] = f"refused: {error}"

        threads = [threading.Thread(target=worker, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        winners = [index for index, outcome in enumerate(outcomes) if outcome.startswith("created study")]
        assert len(winners) == 1, outcomes
        loser = outcomes[1 - winners[0]]
        assert loser.startswith(f"refused: study {name} was created with [training] base_filters"), loser
        stored = optuna.load_study(study_name=name, storage=postgres_url).user_attrs
        assert stored["fingerprint"]["config"]["training"]["base_filters"] == (4, 8)[winners[0]]
        assert stored["config_toml"] == configs[winners[0]].text


def test_a_study_made_before_fingerprints_gets_one_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    old = optuna.create_study(study_name="tiny", storage=url, direction="maximize")
    old.set_user_attr("config_toml", "# the last worker's config")
    old.set_user_attr("data_stats", {"source": "/old/beads"})
    config = tiny_config(tiny_text())
    data = load_study_data(config)
    study, created = create_or_join(config, open_storage(url))

    line = record_study_attrs(study, config, data, created=created)

    assert not created and "made before fingerprints existed: recorded this worker's settings and data" in line
    attrs = study.user_attrs
    assert attrs["fingerprint"] == study_fingerprint(config, data, study_objective(config))
    assert attrs["config_toml"] == "# the last worker's config" and attrs["data_stats"] == {"source": "/old/beads"}
    assert "optuna" in attrs["packages"]
    assert record_study_attrs(study, config, data, created=False).startswith("joined study tiny: same settings")
    wider = tiny_config(tiny_text().replace("base_filters = 4", "base_filters = 8"))
    with pytest.raises(StudyMismatchError, match=r"was created with \[training\] base_filters 4; .* now says 8"):
        record_study_attrs(study, wider, data, created=False)
    assert study.user_attrs == attrs


def test_a_study_made_before_newer_settings_is_joined_by_the_same_config(tmp_path):
    config = tiny_config(tiny_text())
    data = load_study_data(config)
    study, created = create_or_join(config, open_storage(f"sqlite:///{tmp_path / 'tiny.db'}"))
    assert record_study_attrs(study, config, data, created=created).startswith("created study tiny")
    stored = study.user_attrs["fingerprint"]
    added = set(LOSS_SETTINGS)
    assert added <= set(stored["config"]["training"])
    assert stored["joinable"]["faults"]["stop_after_repeated_errors"] == 3
    for name in added:
        del stored["config"]["training"][name]
    del stored["joinable"]["faults"]["stop_after_repeated_errors"]
    study.set_user_attr("fingerprint", stored)  # as a study made before these settings existed holds it

    line = record_study_attrs(study, config, data, created=False)

    assert line == "joined study tiny: same settings and data as when it was created"
    gamma = tiny_config(tiny_text().replace("batch_size = 8", "batch_size = 8\nfocal_gamma = 3.0"))
    with pytest.raises(StudyMismatchError, match=r"created with \[training\] focal_gamma 2; \S+ now says 3;"):
        record_study_attrs(study, gamma, data, created=False)
    patient = tiny_config(tiny_text().replace("[recovery]\n", "[recovery]\nstop_after_repeated_errors = 5\n"))
    assert record_study_attrs(study, patient, data, created=False) == (
        "joined study tiny: [recovery] stop_after_repeated_errors 3 → 5 differs from when it was created; "
        "safe to join (they do not change what a trial measures)"
    )
    assert study.user_attrs["fingerprint"] == stored


def test_which_changes_are_refused_and_which_are_safe():
    base_text = tiny_text()
    data = load_study_data(tiny_config(base_text))

    def compared(text: str) -> list:
        return differences(fingerprint(base_text), fingerprint(text))

    def fingerprint(text: str) -> dict:
        return study_fingerprint(tiny_config(text), data, study_objective(tiny_config(text)))

    def refused(text: str) -> str:
        return refusal("tiny", compared(text), Path("studies/tiny.toml"), ("here", "there"))

    resized = base_text.replace("val_fraction = 0.25", "val_fraction = 0.25\nimage_size = 64")
    assert refused(resized).startswith(
        "study tiny was created with no [data] image_size; studies/tiny.toml now says 64"
    )
    wider_range = base_text.replace("high = 1e-2", "high = 1e-1")
    assert "[search] learning_rate {low = 1e-05, high = 0.01, log = true}; studies/tiny.toml now says " in refused(
        wider_range
    )
    searched = base_text.replace("base_filters = 4\n", "").replace("[search]\n", "[search]\nbase_filters = [4, 8]\n")
    assert refused(searched).startswith("study tiny was created with no [search] base_filters; studies/tiny.toml")
    assert " now says [4, 8] (and 1 more difference); " in refused(searched)
    assert "[pruner] min_resource 1; studies/tiny.toml now says 2" in refused(
        base_text.replace("min_resource = 1", "min_resource = 2")
    )
    assert compared(base_text.replace('kind = "asha"', 'kind = "asha"\nn_warmup_steps = 9')) == []
    assert refused('metric = "val_object_f1"\n' + base_text).startswith(
        'study tiny was created with metric = "val_jaccard"; studies/tiny.toml now says "val_object_f1";'
    )

    safe_text = (
        base_text.replace("tiny test study", "renamed")
        .replace("max_trials = 2", "max_trials = 50")
        .replace("grace_period = 120", "grace_period = 600\nmax_retry = 5")
        .replace("n_startup_trials = 2", 'n_startup_trials = 4\nkind = "random"')
        .replace("run_eagerly = true", "run_eagerly = false\njit_compile = true")
        + '\n[[enqueue]]\narchitecture = "unet"\nloss = "combined"\nlearning_rate = 1e-3\n'
    )
    found = compared(safe_text)
    assert found and all(difference.safe for difference in found)
    assert {difference.key for difference in found} == {
        "description",
        "[[enqueue]]",
        "[budget] max_trials",
        "[recovery] grace_period",
        "[recovery] max_retry",
        "[sampler] kind",
        "[sampler] n_startup_trials",
        "[training] jit_compile",
        "[training] run_eagerly",
    }
    assert safe_changes("tiny", found).startswith('joined study tiny: description "tiny test study" → "renamed", ')


def test_a_fingerprint_holding_nan_equals_itself():
    """NaN never equals itself in Python; a stored fingerprint (JSON allows NaN) must still match its own copy."""
    stored = {
        "config": {"training": {"learning_rate": math.nan}, "search": {"dropout": [math.nan, 0.1]}},
        "joinable": {"enqueue": [{"dropout": math.nan}], "training": {"clipnorm": math.nan}},
    }
    current = json.loads(json.dumps(stored))
    assert differences(stored, current) == []
    changed = json.loads(json.dumps(stored).replace("[NaN, 0.1]", "[NaN, 0.2]"))
    assert [difference.key for difference in differences(stored, changed)] == ["[search] dropout"]


def test_data_is_known_by_its_files_and_statistics_not_by_its_path(tmp_path):
    write_microbeads(tmp_path / "beads", 24, size=32, seed=1)
    shutil.copytree(tmp_path / "beads", tmp_path / "moved")
    shutil.copytree(tmp_path / "beads", tmp_path / "edited")
    write_microbeads(tmp_path / "extra", 4, size=32, seed=9)
    shutil.copy(tmp_path / "extra" / "masks" / "bead_0003.png", tmp_path / "edited" / "masks" / "bead_0003.png")
    config = tiny_config(tiny_text(data_dir="beads"), path=tmp_path / "tiny.toml")

    def fingerprint(folder: str) -> dict:
        return study_fingerprint(config, load_study_data(config, tmp_path / folder), study_objective(config))

    assert differences(fingerprint("beads"), fingerprint("moved")) == []
    found = differences(fingerprint("beads"), fingerprint("edited"))
    line = refusal("tiny", found, config.path, (str(tmp_path / "beads"), str(tmp_path / "edited")))
    before, after = ((tmp_path / folder / "masks" / "bead_0003.png").stat().st_size for folder in ("beads", "edited"))
    assert before != after
    assert f"{tmp_path / 'edited'} has masks/bead_0003.png changed size ({before} → {after} bytes)" in line
    assert {difference.key for difference in found} >= {"files", "objects_per_image_mean"}


def test_a_study_keeps_its_rungs_when_a_pruner_default_changes(tmp_path):
    """A study made when the default reduction factor was 3, by a file that leaves it unset, as that version
    stored it: its workers still join (through the CLI) and its report reads the rungs it ran with."""
    folder = tmp_path / "studies"
    folder.mkdir()
    unset = tiny_text(max_trials=1).replace("reduction_factor = 2\n", "")
    (folder / "tiny.toml").write_text(unset)
    made_then = tiny_config(unset, folder / "tiny.toml")
    assert made_then.pruner.reduction_factor == 2  # today's default
    made_then = dataclasses.replace(made_then, pruner=dataclasses.replace(made_then.pruner, reduction_factor=3))
    url = f"sqlite:///{folder / 'tiny.db'}"
    data = load_study_data(made_then)
    study, created = create_or_join(made_then, open_storage(url))
    record_study_attrs(study, made_then, data, created=created)

    result = run_cli("run", "--study", "tiny", env={"OPTIMIZE_STUDIES_DIR": str(folder)})

    assert result.returncode == 0, result.stderr
    assert "[pruner] reduction_factor = 3 as study tiny was created with: " in result.stdout
    assert "leaves it unset, and the default has changed since" in result.stdout
    study = optuna.load_study(study_name="tiny", storage=url)
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 1
    assert stored_config(study).pruner.reduction_factor == 3
    (folder / "tiny.toml").write_text(tiny_text(max_trials=2))  # says 2 itself: refused, as any other difference

    refused = run_cli("run", "--study", "tiny", env={"OPTIMIZE_STUDIES_DIR": str(folder)})

    assert refused.returncode != 0
    assert "study tiny was created with [pruner] reduction_factor 3; " in one_line(refused.stderr)
    assert "now says 2" in refused.stderr


def test_a_joiner_waits_for_the_fingerprint_of_a_new_study_whose_queue_is_already_filled(tmp_path):
    """A creator enqueues its trials before it stores the fingerprint: queued trials do not make a study old."""
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    config = tiny_config(tiny_text())
    data = load_study_data(config)
    creator, created = create_or_join(config, open_storage(url))
    creator.enqueue_trial({"architecture": "unet", "loss": "dice", "learning_rate": 1e-2})
    joiner, joined_created = create_or_join(config, open_storage(url))
    storing = threading.Timer(0.5, record_study_attrs, args=(creator, config, data), kwargs={"created": created})
    storing.start()

    line = record_study_attrs(joiner, config, data, created=joined_created)
    storing.join()

    assert created and not joined_created
    assert line == "joined study tiny: same settings and data as when it was created"


def test_a_fingerprint_edited_into_something_else_refuses_the_worker_in_one_line(tmp_path):
    """`differences` read `.get` of a string: an AttributeError traceback for a hand-edited study."""
    config = tiny_config(tiny_text())
    data = load_study_data(config)
    study, created = create_or_join(config, open_storage(f"sqlite:///{tmp_path / 'tiny.db'}"))
    record_study_attrs(study, config, data, created=created)
    study.set_user_attr("fingerprint", "garbage")
    attrs = dict(study.user_attrs)

    with pytest.raises(StudyMismatchError, match=r"its user attr 'fingerprint' is not the table optimize writes"):
        record_study_attrs(study, config, data, created=False)
    assert study.user_attrs == attrs
