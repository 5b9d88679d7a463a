"""What a study is and how Optuna searches it; no Keras here.

`config` reads and validates a study file (`studies/NAME.toml`), with `settings` holding every training
default; `study` makes the sampler and pruner and creates or joins the Optuna study; `fingerprint`
keeps workers with other settings or data out of it; `retries` runs a lost trial again.
"""

from optimize.search.config import ParamSpec, StudyConfig, load_config, parse_config, studies_dir
from optimize.search.fingerprint import StudyMismatchError, study_fingerprint
from optimize.search.retries import RetryStaleTrial, requeue
from optimize.search.settings import TrainSettings
from optimize.search.study import create_or_join, load_existing_study, make_pruner, make_sampler, open_study

__all__ = [
    "ParamSpec",
    "RetryStaleTrial",
    "StudyConfig",
    "StudyMismatchError",
    "TrainSettings",
    "create_or_join",
    "load_config",
    "load_existing_study",
    "make_pruner",
    "make_sampler",
    "open_study",
    "parse_config",
    "requeue",
    "studies_dir",
    "study_fingerprint",
]
