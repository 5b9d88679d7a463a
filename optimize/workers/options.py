"""The options of `optimize run` that one worker needs, without Keras: a pool's parent process passes them
on to its worker processes and never trains itself."""

from __future__ import annotations

from dataclasses import dataclass

GPU_REQUESTED_ENV = "OPTIMIZE_GPU_REQUESTED"
"""Set by a pool in the environment of a worker it starts for a GPU (`--gpus`): that worker refuses to train on
the CPU (`optimize.training.device_check.check_device`)."""


@dataclass
class RunOptions:
    """Command-line options of `optimize run` that one worker needs."""

    study: str
    n_trials: int | None = None
    timeout: float | None = None
    storage: str | None = None
    seed: int | None = None
    data: str | None = None
    new_study: str | None = None
    verbose: bool = False
    compile_cache: str | None = None
    allow_cpu: bool = False
    artifacts: str | None = None
    rank: int = 0
    n_workers: int = 1

    def worker_args(self) -> list[str]:
        """These options as `optimize run` arguments for a worker process (rank and trials added later)."""
        args = ["--study", self.study]
        for flag, value in (
            ("--timeout", self.timeout),
            ("--storage", self.storage),
            ("--seed", self.seed),
            ("--data", self.data),
            ("--new-study", self.new_study),
            ("--compile-cache", self.compile_cache),
            ("--artifacts", self.artifacts),
        ):
            if value is not None:
                args += [flag, str(value)]
        return args + (["--verbose"] if self.verbose else []) + (["--allow-cpu"] if self.allow_cpu else [])
