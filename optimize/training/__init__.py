"""Training one configuration with Keras: the unit of work of every trial, with no Optuna inside.

`train` builds, compiles and fits a model from `TrainSettings`; `dataset` loads the study's images once
per worker; `history` records every epoch; `out_of_memory` recognises the backend's out-of-memory error;
`timing` splits a run's seconds into compiling, steps, validation and host work; `device`, `compile_cache`
and `allocator` prepare the process; `injected_faults` are test hooks.
"""

from optimize.training.dataset import StudyData, load_study_data
from optimize.training.history import EpochHistory
from optimize.training.timing import FitTiming, compiled_program, trial_time_split
from optimize.training.train import TrainResult, build_model, make_optimizer, train

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
