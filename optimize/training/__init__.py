"""Training one configuration with Keras: the unit of work of every trial, with no Optuna inside.

`train` builds, compiles and fits a model from `TrainSettings`; `dataset` loads the study's images once
per worker; `history` records every epoch; `out_of_memory` recognises the backend's out-of-memory error;
`timing` splits a run's seconds into compiling, steps, validation and host work; `device` says where trials
train and `device_check` refuses a CPU for a study sized for a GPU; `compile_cache`
and `allocator` prepare the process; `garbage` frees each trial's objects cheaply; `injected_faults` are
test hooks.

The members that load Keras are imported on first use (PEP 562), so that a command that only reads the
study's data (`optimize import-results`) never pays for Keras' import.
"""

import importlib

from optimize.training.dataset import StudyData, load_study_data

_KERAS_MEMBERS = {
    "EpochHistory": "optimize.training.history",
    "FitTiming": "optimize.training.timing",
    "TrainResult": "optimize.training.train",
    "build_model": "optimize.training.train",
    "compiled_program": "optimize.training.timing",
    "make_optimizer": "optimize.training.train",
    "train": "optimize.training.train",
    "trial_time_split": "optimize.training.timing",
}
"""Public names whose module imports Keras, and that module."""

__all__ = [
    "EpochHistory",
    "FitTiming",
    "StudyData",
    "TrainResult",
    "build_model",
    "compiled_program",
    "load_study_data",
    "make_optimizer",
    "train",
    "trial_time_split",
]


def __getattr__(name: str) -> object:
    if name in _KERAS_MEMBERS:
        return getattr(importlib.import_module(_KERAS_MEMBERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
