"""The best models of a study, kept as Optuna artifacts so that optuna-dashboard lists them on their trials.

A COMPLETE trial that ranks among the study's `[artifacts] keep_models` best when it finishes saves its
best-epoch model (`.keras`) with `optuna.artifacts.upload_artifact` into a `FileSystemArtifactStore`; the
model files of trials that fall out of the top are removed (their metadata stays: Optuna refuses to
change a finished trial, so the dashboard still lists them, and their download fails). A study of N trials
keeps at most
min(N, keep_models) models; trials finishing at the same moment on several workers may leave one more
each until the next trial finishes.

The folder: `--artifacts DIR`, else `$OPTIMIZE_ARTIFACTS`, else the study file's `[artifacts] dir`, else
beside the SQLite or journal file (`NAME.artifacts/`). A database server has no file to sit beside: its
studies default to `studies/NAME.artifacts/` on each node, which a worker says at start, since the
other nodes, the dashboard and `export-best` elsewhere cannot read it there.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from optimize.errors import UsageError
from optimize.folders import file_in_the_way, studies_dir
from optimize.search.config import StudyConfig
from optimize.storage.database import storage_file

ARTIFACTS_ENV = "OPTIMIZE_ARTIFACTS"
ARTIFACTS_ATTR_PREFIX = "artifacts:"
"""Optuna's system attr prefix of an artifact's metadata (`optuna.artifacts._upload`)."""
MODEL_SUFFIX = ".keras"


@dataclass(frozen=True)
class ArtifactFolder:
    """The folder of a study's artifacts, where it came from, and whether other nodes can share it."""

    path: Path
    source: str
    local_default: bool = False

    def store(self) -> FileSystemArtifactStore:
        return FileSystemArtifactStore(self.path)


def resolve_artifact_folder(study_name: str, url: str, option: str | None, configured: Path | None) -> ArtifactFolder:
    """The artifact folder for a study in storage `url` (see the module's docstring for the order)."""
    if option:
        return ArtifactFolder(Path(option).expanduser().resolve(), "--artifacts")
    if os.environ.get(ARTIFACTS_ENV):
        return ArtifactFolder(Path(os.environ[ARTIFACTS_ENV]).expanduser().resolve(), f"${ARTIFACTS_ENV}")
    if configured is not None:
        return ArtifactFolder(configured, "[artifacts] dir")
    beside = storage_file(url)
    if beside is not None:
        return ArtifactFolder(beside.with_name(f"{beside.stem}.artifacts"), f"beside {beside.name}")
    return ArtifactFolder(studies_dir() / f"{study_name}.artifacts", "this node's studies folder", local_default=True)


def prepare_folder(folder: ArtifactFolder) -> None:
    """Prove the folder can be made and written now, before any trial trains; else one `UsageError` line.

    The folder itself is made when the first model is kept, so that a run that stops before (an unreachable
    database) leaves no empty folder behind: the check writes into the nearest folder that exists.
    """
    blocker = file_in_the_way(folder.path)
    problem = None
    if blocker is not None:
        problem = "is a file" if blocker == folder.path else f"is under {blocker}, which is a file"
    else:
        existing = next(path for path in (folder.path, *folder.path.parents) if path.exists())
        try:
            with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-check-"):
                pass
        except OSError as error:
            problem = f"cannot be written ({error.strerror})"
    if problem is not None:
        raise UsageError(
            f"artifacts folder {folder.path} ({folder.source}) {problem}; the best models are saved there: "
            f"give a writable folder with --artifacts DIR, ${ARTIFACTS_ENV} or [artifacts] dir"
        )


def model_artifacts(trial: FrozenTrial) -> list[dict]:
    """The trial's model artifacts still kept (metadata as Optuna stores it: artifact_id, filename, ...)."""
    metas = []
    for key, value in trial.system_attrs.items():
        if key.startswith(ARTIFACTS_ATTR_PREFIX):
            try:
                meta = json.loads(value) if isinstance(value, str) else value
            except json.JSONDecodeError:
                continue  # not Optuna's metadata (a hand edit): no artifact of ours
            if isinstance(meta, dict) and str(meta.get("filename", "")).endswith(MODEL_SUFFIX):
                metas.append(meta)
    return metas


def keep_if_among_best(
    trial: optuna.Trial,
    value: float,
    save_model: Callable[[Path], None],
    store: FileSystemArtifactStore,
    keep: int,
) -> str | None:
    """Upload the trial's model (written by `save_model(path)`) when `value` ranks among the `keep` best
    COMPLETE trials, then remove the models of trials now outside them; returns the artifact id or None."""
    study = trial.study
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(
        [(other.value, other.number, other) for other in complete if other.value is not None]
        + [(value, trial.number, None)],
        key=lambda entry: (-entry[0], entry[1]),
    )
    if all(other is not None for _, _, other in ranked[:keep]):
        return None
    with tempfile.TemporaryDirectory(prefix="optimize-model-") as folder:
        path = Path(folder) / f"trial_{trial.number:04d}_model{MODEL_SUFFIX}"
        save_model(path)
        artifact_id = upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)
    for _, _, other in ranked[keep:]:
        if other is not None:
            remove_models(other, store)
    return artifact_id


def remove_models(trial: FrozenTrial, store: FileSystemArtifactStore) -> None:
    """Remove a trial's model files. Their metadata stays: Optuna refuses to change a finished trial, so the
    dashboard still lists them on the trial, and `kept_models` tells them apart."""
    for meta in model_artifacts(trial):
        try:
            store.remove(meta["artifact_id"])
        except ArtifactNotFound:
            pass  # removed by another worker, or kept in another node's local folder


def kept_models(trial: FrozenTrial, store: FileSystemArtifactStore) -> list[dict]:
    """The trial's model artifacts whose file is still in the store."""
    kept = []
    for meta in model_artifacts(trial):
        try:
            store.open_reader(meta["artifact_id"]).close()
        except ArtifactNotFound:
            continue
        kept.append(meta)
    return kept


def download_model(trial: FrozenTrial, store: FileSystemArtifactStore, path: Path) -> dict:
    """Write the trial's kept model to `path`; returns its metadata (artifact_id, filename, ...)."""
    metas = kept_models(trial, store)
    if not metas:
        raise FileNotFoundError(f"trial {trial.number} has no kept model")
    download_artifact(artifact_store=store, file_path=str(path), artifact_id=metas[-1]["artifact_id"])
    return metas[-1]


class ModelKeeper:
    """Keeps the models of the study's best COMPLETE trials as artifacts (`optimize.storage.artifacts`)."""

    def __init__(self, folder: ArtifactFolder, keep: int) -> None:
        self.folder = folder.path
        self.store = folder.store()
        self.keep = keep
        self.describe = f"models the {keep} best kept in {folder.path} ({folder.source})"
        if folder.local_default:
            self.describe += (
                "; a folder on this node only: give every node one shared folder with --artifacts, "
                f"${ARTIFACTS_ENV} or [artifacts] dir"
            )

    def __call__(self, trial: optuna.Trial, value: float, model: Any) -> None:
        """`model` is the trial's Keras model (its `save` writes the `.keras` file)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        keep_if_among_best(trial, value, model.save, self.store, self.keep)


def model_keeper(config: StudyConfig, url: str, option: str | None) -> ModelKeeper | None:
    """The keeper of the study's best models, its folder checked writable now; None with `keep_models = 0`."""
    if config.artifacts.keep_models == 0:
        return None
    folder = resolve_artifact_folder(config.name, url, option, config.artifacts_dir())
    prepare_folder(folder)
    return ModelKeeper(folder, config.artifacts.keep_models)
