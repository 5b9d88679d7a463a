"""What defines a study: recorded once when it is created, so that no worker joins it with other settings or data.

Trials are comparable only when they train on the same data with the same fixed settings, search space,
pruner and objective. The fingerprint is plain JSON, stored as the study user attr `fingerprint`
(`optuna.load_study(...).user_attrs["fingerprint"]`), with three parts:

- `config`, compared strictly: the objective (the study file's `metric` and the direction); `[data]` image_size,
  val_fraction and split_seed; every `[training]` setting that is not searched, except the
  execution modes (`EXECUTION_SETTINGS`); every `[search]` parameter with its choices or
  range; the `[pruner]` kind and the settings that kind uses.
- `data`, compared strictly: for a folder, the name and size in bytes of every file under images/
  and masks/ (not the folder's absolute path: another node may mount the same files elsewhere);
  for synthetic beads, `[data.synthetic]`; and in both cases the statistics of the loaded set
  (image size, images, train/val split, objects per image, foreground fraction, object areas).
- `joinable`, safe to change: description, `[budget]`, `[recovery]` (stored as `faults`, its
  former name), `[sampler]` (and `--seed`),
  `[[enqueue]]` entries, the `[training]` execution modes jit_compile, run_eagerly, augment_on,
  steps_per_execution and xla_autotune_level. They decide how many trials run,
  how crashes are handled, which points are tried next and how a step executes, never what a
  trial measures; they are recorded only to say what differs. Command-line flags such as
  `--n-trials`, `--timeout`, `--workers` and `--gpus`, the data folder's path and the config
  file's path are not part of the fingerprint.

A setting added to the project after a study was made is missing from its stored fingerprint; it
differs only when this worker's value is not the setting's default (which is what the study ran with).
A default that changed after a study was made (`[pruner] reduction_factor`, 3 before the grid's replays
chose 2) would refuse every worker whose file leaves the setting unset: for the pruner, such settings
follow the stored fingerprint instead (`recorded_pruner`), in workers and in what reads the study.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optimize.errors import UserError
from optimize.search.config import (
    PRUNER_SETTINGS,
    BudgetConfig,
    PrunerConfig,
    RecoveryConfig,
    SamplerConfig,
    StudyConfig,
)
from optimize.search.settings import TrainSettings
from optimize.search.space import ParamSpec

if TYPE_CHECKING:
    from optimize.training.dataset import StudyData

FINGERPRINT_ATTR = "fingerprint"
FINGERPRINT_VERSION = 1
EXECUTION_SETTINGS = ("jit_compile", "run_eagerly", "augment_on", "steps_per_execution", "xla_autotune_level")
JOINABLE_SECTIONS = {"budget": "budget", "faults": "recovery", "sampler": "sampler", "training": "training"}
"""Each joinable section's key in the stored fingerprint and the study file's name for it."""
DEFAULTS = {
    "training": dataclasses.asdict(TrainSettings()),
    "budget": dataclasses.asdict(BudgetConfig()),
    "faults": dataclasses.asdict(RecoveryConfig()),
    "sampler": dataclasses.asdict(SamplerConfig()),
}
"""Each setting's default, by the fingerprint's section key: what a study made before the setting existed used."""
DATA_FOLDERS = ("images", "masks")
LISTED_FILES_MAX_CHARS = 32_000  # MySQL's TEXT column holds 64 KiB; larger listings keep only their digest
STATS_REL_TOLERANCE = 1e-6
SHOWN_NAMES = 4
START_OVER = (
    "trials of different settings or data must not mix in one study: "
    "keep the study's settings and data, or start over with --new-study NEW_NAME"
)


class StudyMismatchError(UserError):
    """A worker's settings or data differ from what its study was created with."""


@dataclass(frozen=True)
class Difference:
    """One item that differs between a stored fingerprint and this worker's.

    `part` is 'config', 'data' or 'joinable'; `key` names it as the config file does
    (`[training] base_filters`) or as the data does (`files`, `objects_per_image_mean`).
    """

    part: str
    key: str
    before: Any
    after: Any

    @property
    def safe(self) -> bool:
        return self.part == "joinable"


def study_fingerprint(config: StudyConfig, data: StudyData, objective: dict[str, str]) -> dict:
    """The fingerprint of `config` run on `data` with `objective` (metric name and direction), as JSON values."""
    searched = {param.name for param in config.search}
    training = dataclasses.asdict(config.training)
    pruner = config.pruner
    fingerprint = {
        "version": FINGERPRINT_VERSION,
        "config": {
            "objective": objective,
            "data": {
                "image_size": config.data.image_size,
                "val_fraction": config.data.val_fraction,
                "split_seed": config.data.split_seed,
            },
            "search": {param.name: _param_spec(param) for param in config.search},
            "training": {
                name: value
                for name, value in training.items()
                if name not in searched and name not in EXECUTION_SETTINGS
            },
            "pruner": {"kind": pruner.kind, **{name: getattr(pruner, name) for name in PRUNER_SETTINGS[pruner.kind]}},
        },
        "data": data_fingerprint(config, data),
        "joinable": {
            "description": config.description,
            "budget": dataclasses.asdict(config.budget),
            "faults": dataclasses.asdict(config.recovery),
            "sampler": dataclasses.asdict(config.sampler),
            "training": {name: training[name] for name in EXECUTION_SETTINGS if name not in searched},
            "enqueue": list(config.enqueue),
        },
    }
    return json.loads(json.dumps(fingerprint, default=float))


def data_fingerprint(config: StudyConfig, data: StudyData) -> dict:
    """Files (names and sizes, relative to the data folder) or generator settings, and the set's statistics."""
    stats = {key: value for key, value in data.stats.items() if key != "source"}
    if data.directory is None:
        return {"kind": "synthetic", "synthetic": dataclasses.asdict(config.data.synthetic), "stats": stats}
    files = data_files(data.directory)
    listing = json.dumps(files, sort_keys=True)
    described = {"kind": "folder", "n_files": len(files), "files_sha256": hashlib.sha256(listing.encode()).hexdigest()}
    if len(listing) <= LISTED_FILES_MAX_CHARS:
        described["files"] = files
    return {**described, "stats": stats}


def data_files(directory: Path) -> dict[str, int]:
    """Size in bytes of each image file the loader reads, keyed `images/NAME` and `masks/NAME`."""
    from data import IMAGE_EXTENSIONS  # loads Keras: only workers, which train, get here

    files = {}
    for folder in DATA_FOLDERS:
        for path in sorted((directory / folder).iterdir()):
            if path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
                continue
            files[f"{folder}/{path.name}"] = path.stat().st_size
    return files


def differences(stored: dict, current: dict) -> list[Difference]:
    """Everything that differs, strict parts first: config, then data, then the joinable settings."""
    return [
        *_config_differences(stored.get("config", {}), current.get("config", {})),
        *_data_differences(stored.get("data", {}), current.get("data", {})),
        *_joinable_differences(stored.get("joinable", {}), current.get("joinable", {})),
    ]


def refusal(study_name: str, found: list[Difference], config_path: Path, sources: tuple[str, str]) -> str:
    """One line naming the first difference that forbids joining, both values, and how to start over.

    `sources` names the data the study was created with and this worker's data (paths or descriptions).
    """
    strict = [difference for difference in found if not difference.safe]
    first = strict[0]
    more = f" (and {len(strict) - 1} more difference{'s' * (len(strict) > 2)})" if len(strict) > 1 else ""
    what = _describe(first, shown_path(config_path), sources)
    return f"study {study_name} was created with {what}{more}; {START_OVER}"


def safe_changes(study_name: str, found: list[Difference]) -> str:
    """One line saying which safe settings differ from the study's creation and that joining is allowed."""
    items = [_change(difference) for difference in found if difference.safe]
    return (
        f"joined study {study_name}: {_names(items)} differ{'s' * (len(items) == 1)} from when it was created; "
        "safe to join (they do not change what a trial measures)"
    )


def _table(value: object) -> dict:
    """`value` when it is a table; a missing or hand-edited (not a table) part of a fingerprint reads as empty."""
    return value if isinstance(value, dict) else {}


def recorded_pruner(config: StudyConfig, fingerprint: dict | None) -> tuple[StudyConfig, list[str]]:
    """`config` with the `[pruner]` settings its file leaves unset taken from a study's stored fingerprint,
    and those settings as the file would write them (`reduction_factor = 3`).

    A study keeps the rungs it was created with when a default changes in a later version: its workers go on
    joining it, and its report shows the rungs its trials were pruned at. Settings the file sets are kept,
    so that a file which differs from its study is still refused.
    """
    stored = _table(_table(_table(fingerprint).get("config")).get("pruner"))
    try:
        written = tomllib.loads(config.text).get("pruner", {})
    except tomllib.TOMLDecodeError:
        return config, []
    fields = {field.name for field in dataclasses.fields(PrunerConfig)}
    taken = {
        name: value
        for name, value in stored.items()
        if name in fields and name not in written and value != getattr(config.pruner, name)
    }
    if not taken:
        return config, []
    pruner = dataclasses.replace(config.pruner, **taken)
    return dataclasses.replace(config, pruner=pruner), [f"{name} = {_shown(value)}" for name, value in taken.items()]


def shown_path(path: Path) -> str:
    """`path` relative to the working folder when it lies inside it (as the user typed it), else absolute."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _param_spec(param: ParamSpec) -> list | dict:
    """As `[search]` writes it: a list of choices or a range table."""
    if param.is_categorical:
        return list(param.choices)
    return {"low": param.low, "high": param.high, "log": param.log, "step": param.step}


def _config_differences(stored: dict, current: dict) -> Iterator[Difference]:
    for section in ("objective", "data", "search", "training", "pruner"):
        yield from _section_differences(
            "config", section, stored.get(section, {}), current.get(section, {}), DEFAULTS.get(section, {})
        )


def _joinable_differences(stored: dict, current: dict) -> Iterator[Difference]:
    for key in ("description", "enqueue"):
        if not _same(stored.get(key), current.get(key)):
            yield Difference("joinable", "[[enqueue]]" if key == "enqueue" else key, stored.get(key), current.get(key))
    for key, section in JOINABLE_SECTIONS.items():
        yield from _section_differences(
            "joinable", section, stored.get(key, {}), current.get(key, {}), DEFAULTS.get(key, {})
        )


def _section_differences(
    part: str, section: str, stored: dict, current: dict, defaults: dict | None = None
) -> Iterator[Difference]:
    """The settings of one section that differ. A setting missing from `stored` that has a default in
    `defaults` was added after the study was made, which then ran with that default."""
    defaults = defaults or {}
    for name in [*stored, *(name for name in current if name not in stored)]:
        was_set = name in stored or name in defaults
        before, after = stored.get(name, defaults.get(name)), current.get(name)
        if not _same(before, after) or was_set != (name in current):
            yield Difference(part, f"[{section}] {name}", before, after)


def _data_differences(stored: dict, current: dict) -> Iterator[Difference]:
    if stored.get("kind") != current.get("kind"):
        yield Difference("data", "source", stored.get("kind"), current.get("kind"))
        return
    if current.get("kind") == "synthetic":
        yield from _section_differences("data", "data.synthetic", stored.get("synthetic", {}), current["synthetic"])
    elif stored.get("files_sha256") != current.get("files_sha256"):
        yield Difference("data", "files", stored, current)
    before, after = stored.get("stats", {}), current.get("stats", {})
    for name in [*before, *(name for name in after if name not in before)]:
        if not _close(before.get(name), after.get(name)):
            yield Difference("data", name, before.get(name), after.get(name))


def _same(before: Any, after: Any) -> bool:
    """Whether two JSON values are equal, NaN equal to NaN (JSON stores it; Python's NaN never equals itself).

    Values read from a study file are finite (`optimize.search.tables.typed`); a stored fingerprint may still
    hold a NaN from before that check, which must not refuse the very settings it was made with.
    """
    if isinstance(before, float) and isinstance(after, float) and math.isnan(before) and math.isnan(after):
        return True
    if isinstance(before, list) and isinstance(after, list):
        return len(before) == len(after) and all(map(_same, before, after))
    if isinstance(before, dict) and isinstance(after, dict):
        return before.keys() == after.keys() and all(_same(before[key], after[key]) for key in before)
    return before == after


def _close(before: Any, after: Any) -> bool:
    if isinstance(before, int | float) and isinstance(after, int | float):
        return math.isclose(before, after, rel_tol=STATS_REL_TOLERANCE, abs_tol=1e-12)
    return before == after


def _describe(difference: Difference, config: str, sources: tuple[str, str]) -> str:
    """The middle of a refusal: what the study was created with and what this worker has instead."""
    stored_source, current_source = sources
    key, before, after = difference.key, difference.before, difference.after
    if difference.part == "config" or key.startswith("[data.synthetic]"):
        if key == "[objective] metric":
            return f"metric = {_shown(before)}; {config} now says {_shown(after)}"
        if key.startswith("[objective]"):
            return f"{key} {_shown(before)}; this version of optimize uses {_shown(after)}"
        if before is None and after is not None:
            return f"no {key}; {config} now says {_shown(after)}"
        return f"{key} {_shown(before)}; {config} now says {_shown(after)}"
    if key == "source":
        return f"data from {stored_source}; this worker's data is {current_source}"
    if key == "files":
        changes = _file_changes(before, after)
        return f"other data files: {current_source} has {changes} (the study's data: {stored_source})"
    return f"data whose {key} is {_shown(before)}; {current_source} gives {_shown(after)}"


def _file_changes(stored: dict, current: dict) -> str:
    """Which files were added, removed or changed size; only counts when a listing was too long to store."""
    before, after = stored.get("files"), current.get("files")
    if before is None or after is None:
        return f"{current.get('n_files')} files, not the same names and sizes as the {stored.get('n_files')} it had"
    changes = []
    for label, names in (
        ("added", sorted(set(after) - set(before))),
        ("removed", sorted(set(before) - set(after))),
    ):
        if names:
            changes.append(f"{_names(names)} {label}")
    resized = sorted(name for name in set(before) & set(after) if before[name] != after[name])
    if resized:
        first = resized[0]
        which = "" if len(resized) == 1 else f"{first}: "
        changes.append(f"{_names(resized)} changed size ({which}{before[first]} → {after[first]} bytes)")
    return "; ".join(changes)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_NAMES])
    return shown if len(names) <= SHOWN_NAMES else f"{shown} and {len(names) - SHOWN_NAMES} more"


def _change(difference: Difference) -> str:
    key, before, after = difference.key, difference.before, difference.after
    if key == "[[enqueue]]":
        n_before, n_after = len(before or []), len(after or [])
        return f"[[enqueue]] {n_before} → {n_after} entries" if n_before != n_after else "[[enqueue]] entries"
    return f"{key} {_shown(before)} → {_shown(after)}"


def _shown(value: Any) -> str:
    """A value as the config file writes it (TOML-like), kept short."""
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, float):
        return f"{value:g}" if float(f"{value:g}") == value else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_shown(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{name} = {_shown(item)}" for name, item in value.items() if item is not None) + "}"
    return str(value)
