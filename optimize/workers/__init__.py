"""Running trials: one worker's loop, the pool of worker processes, stop signals and what a person watching sees.

`worker` joins the study and runs trials (`optimize run`); `pool` starts one worker process per GPU or
per `--workers`; `objective` is one trial: suggest, train, store; `pruning` reports each epoch to Optuna;
`interrupt` turns SIGTERM and SIGINT into a trial handed back; `progress` prints trials and epochs;
`confirm` re-trains the best configurations (`optimize confirm`); `warm_cache` compiles a study's programs
ahead of its workers (`optimize warm-cache`).

Names load on first use: the pool's parent process and `--gpus` parsing never import Keras.
"""

import importlib

_EXPORTS = {
    "Objective": "objective",
    "RunOptions": "options",
    "run_worker": "worker",
    "run_worker_pool": "pool",
    "plan_workers": "pool",
    "choose_gpus": "pool",
    "warm_cache": "warm_cache",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
