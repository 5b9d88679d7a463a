"""`optimize export-best`: the best configuration and every trial's history, read from the database only."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import optuna
from optuna.trial import TrialState

from optimize.errors import UserError
from optimize.folders import make_output_folder, studies_dir
from optimize.results.frame import history_frame, stored_config, trials_frame
from optimize.results.record import read_record
from optimize.search.study import package_versions
from optimize.storage import redact, storage_kind


def export_best(study: optuna.Study, url: str, out_dir: str | Path | None = None) -> Path:
    """Write `best_hyperparameters.json`, `search_results.csv` and `histories/trial_NNNN.csv`; return the folder."""
    trials = study.get_trials(deepcopy=False)
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    if not complete:
        states = ", ".join(
            f"{state.name} {sum(t.state == state for t in trials)}"
            for state in TrialState
            if any(t.state == state for t in trials)
        )
        raise UserError(f"study {study.study_name!r} has no COMPLETE trial yet ({states or 'no trials'})")
    out = make_output_folder(Path(out_dir) if out_dir else studies_dir() / study.study_name / "export")
    (out / "histories").mkdir(exist_ok=True)

    best = study.best_trial
    record = read_record(best)
    summary = {
        "study": study.study_name,
        "objective": "val_jaccard (maximize)",
        "trial_number": best.number,
        "value": best.value,
        "params": best.params,
        "settings": full_settings(study, best.params),
        "best_epoch": record.best_epoch,
        "epochs_run": record.epochs_run,
        "param_count": record.param_count,
        "n_trials": {state.name: sum(t.state == state for t in trials) for state in TrialState},
        "storage": {"kind": storage_kind(url), "url": redact(url)},
        "exported_at_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "packages": {"training": study.user_attrs.get("packages", {}), "export": package_versions()},
        "data_stats": study.user_attrs.get("data_stats"),
    }
    (out / "best_hyperparameters.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    trials_frame(trials).to_csv(out / "search_results.csv", index=False)
    for trial in trials:
        history_frame(trial).to_csv(out / "histories" / f"trial_{trial.number:04d}.csv", index=False)
    return out


def full_settings(study: optuna.Study, params: dict) -> dict | None:
    """Every training setting of the best trial (fixed ones from the stored config, plus its params)."""
    config = stored_config(study)
    if config is None:
        return None
    try:
        return dataclasses.asdict(config.training.replace(**params))
    except (TypeError, ValueError):
        return None
