"""`optimize export-best`: the best configuration and every trial's history, read from the database only."""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from optimize.errors import UserError
from optimize.folders import make_output_folder, studies_dir
from optimize.inference.portable import write_portable_model
from optimize.results.confirmation import ConfirmedPick, confirmed_pick, load_confirmation
from optimize.results.frame import history_frame, stored_config, trials_frame, whole_numbers
from optimize.results.record import OBJECT_METRICS, read_record, study_metric, trial_value
from optimize.search.study import package_versions
from optimize.storage import redact, storage_kind
from optimize.storage.artifacts import download_model, resolve_artifact_folder

BEST_MODEL_FILE = "best_model.keras"


def export_best(
    study: optuna.Study, url: str, out_dir: str | Path | None = None, artifacts: str | None = None
) -> tuple[Path, dict]:
    """Write `best_hyperparameters.json`, `search_results.csv`, `histories/trial_NNNN.csv` and the best trial's
    kept model as `best_model.keras`; return the folder and the JSON's content.

    The best trial is the study's best single run, unless `optimize confirm` re-trained the top
    configurations to the end: then it is the one with the best mean over its re-runs.

    `artifacts` is the `--artifacts` folder, when given (see `optimize.storage.artifacts`).
    """
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

    confirmation = confirmation_summary(study)
    best = study.best_trial
    if confirmation is not None and confirmation.differs:
        best = next(trial for trial in complete if trial.number == confirmation.pick)
    record = read_record(best)
    metric = study_metric(study)
    summary = {
        "study": study.study_name,
        "objective": f"{metric} (maximize)",
        "chosen_by": "confirmation" if confirmation is not None and confirmation.complete else "single run",
        "confirmation": None if confirmation is None else confirmation_entry(confirmation),
        "trial_number": best.number,
        "value": best.value,
        "val_jaccard": trial_value(best, record),
        "object_metrics": {name: getattr(record, name) for name in OBJECT_METRICS},
        "params": best.params,
        "settings": full_settings(study, best.params),
        "best_epoch": record.best_epoch,
        "epochs_run": record.epochs_run,
        "param_count": record.param_count,
        "model": export_model(study, best, url, artifacts, out),
        "n_trials": {state.name: sum(t.state == state for t in trials) for state in TrialState},
        "storage": {"kind": storage_kind(url), "url": redact(url)},
        "exported_at_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "packages": {"training": study.user_attrs.get("packages", {}), "export": package_versions()},
        "data_stats": study.user_attrs.get("data_stats"),
    }
    (out / "best_hyperparameters.json").write_text(json.dumps(strict_json(summary), indent=2, default=str) + "\n")
    whole_numbers(trials_frame(trials)).to_csv(out / "search_results.csv", index=False)
    for stale in (out / "histories").glob("trial_*.csv"):  # an earlier export's, of this study or another
        stale.unlink()
    for trial in trials:
        whole_numbers(history_frame(trial)).to_csv(out / "histories" / f"trial_{trial.number:04d}.csv", index=False)
    return out, summary


def strict_json(value: object) -> object:
    """`value` with NaN and inf as null: Python writes them as NaN and Infinity, which strict JSON readers refuse
    (a study a user's own script made may hold an infinite value)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(item) for item in value]
    return value


def confirmation_summary(study: optuna.Study) -> ConfirmedPick | None:
    """What `optimize confirm` found for the study's best configurations; None when it was not run."""
    confirm_study = load_confirmation(study)
    return None if confirm_study is None else confirmed_pick(study, confirm_study)


def confirmation_entry(confirmation: ConfirmedPick) -> dict:
    """The JSON's `confirmation`: each configuration's mean ± std over its re-runs, the pick and the verdict."""
    rows = confirmation.table.astype(object).where(confirmation.table.notna(), None)
    return {
        "metric": confirmation.metric,
        "runs": {
            "complete": confirmation.runs_done,
            "planned": confirmation.runs_planned,
            "failed": confirmation.runs_failed,
        },
        "pick": confirmation.pick,
        "single_run_best": confirmation.single_run_best,
        "pick_differs": confirmation.differs,
        "summary": confirmation.summary(),
        "configurations": rows.to_dict("records"),
    }


def export_model(study: optuna.Study, best: FrozenTrial, url: str, option: str | None, out: Path) -> dict:
    """Write the best trial's kept model as `out/best_model.keras`; the JSON entry says what was written, or
    why nothing was (a study of an older version, `keep_models = 0`, or a folder this machine does not see).

    The file is the trial's model without its compile config (`optimize.inference.write_portable_model`), so
    that `keras.models.load_model` loads it where only Keras was imported; the compiled original, with its
    loss and metrics, stays in the artifact store (`artifact_id`).
    """
    config = stored_config(study)
    folder = resolve_artifact_folder(study.study_name, url, option, config.artifacts_dir() if config else None)
    target = out / BEST_MODEL_FILE
    if folder.path.exists() and not folder.path.is_dir():
        raise UserError(f"{folder.path} ({folder.source}) is a file; expected the folder of the study's kept models")
    with tempfile.TemporaryDirectory(prefix="optimize-export-") as scratch:
        original = Path(scratch) / "trial_model.keras"
        try:
            meta = download_model(best, folder.store(), original)
        except FileNotFoundError:
            target.unlink(missing_ok=True)  # an earlier export's model is not this trial's
            reason = (
                f"trial {best.number} has no model in {folder.path} ({folder.source}); models are kept by studies "
                "run with this version, unless [artifacts] keep_models = 0; --artifacts DIR names another folder"
            )
            return {"file": None, "reason": reason}
        digest = write_portable_model(original, target)
    return {
        "file": BEST_MODEL_FILE,
        "sha256": digest,
        "trial_number": best.number,
        "artifact_id": meta["artifact_id"],
        "artifact_file": meta["filename"],
        "artifacts": str(folder.path),
    }


def full_settings(study: optuna.Study, params: dict) -> dict | None:
    """Every training setting of the best trial (fixed ones from the stored config, plus its params)."""
    config = stored_config(study)
    if config is None:
        return None
    try:
        return dataclasses.asdict(config.training.replace(**params))
    except (TypeError, ValueError):
        return None
