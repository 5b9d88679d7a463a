"""What a study is and how Optuna searches it; no Keras here.

`config` reads and validates a study file (`studies/NAME.toml`), with `settings` holding every training
default and `space` the search space (`[search]`); `study` makes the sampler and pruner and creates or
joins the Optuna study; `fingerprint` keeps workers with other settings or data out of it.
"""

from optimize.search.config import StudyConfig, load_config, parse_config
from optimize.search.fingerprint import StudyMismatchError, study_fingerprint
from optimize.search.settings import TrainSettings
from optimize.search.space import ParamSpec, SearchSpace
from optimize.search.study import create_or_join, load_existing_study, make_pruner, make_sampler, open_study

__all__ = [
    "ParamSpec",
    "SearchSpace",
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
    "study_fingerprint",
]
