"""Several worker processes on one node, one study: `optimize run --gpus 0,1 | --workers N`.

Each worker is its own `optimize run` process (pinned to a GPU with `CUDA_VISIBLE_DEVICES`) with
its own rank, so its sampler seed differs. The parent prints every worker's lines prefixed by its
rank, forwards SIGTERM/SIGINT, and exits non-zero when a worker failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import TextIO

from .errors import UserError


@dataclass(frozen=True)
class WorkerSpec:
    """One worker process: its rank, the GPU it sees (None: no pinning) and its share of trials."""

    rank: int
    gpu: str | None
    n_trials: int | None


def visible_gpus(spec: str) -> list[str]:
    """GPU ids from `0,1,2`, or every GPU this job may use for `all-visible`."""
    if spec != "all-visible":
        gpus = [gpu.strip() for gpu in spec.split(",") if gpu.strip()]
        if not gpus:
            raise UserError(f"--gpus {spec!r}: expected a comma-separated list like 0,1 or all-visible")
        return gpus
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = [gpu for gpu in visible.split(",") if gpu.strip()]
    else:
        try:
            listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            listing = ""
        gpus = [str(index) for index, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]
    if not gpus:
        raise UserError("--gpus all-visible: no GPU is visible (CUDA_VISIBLE_DEVICES empty, nvidia-smi lists none)")
    return gpus


def plan_workers(
    gpus: list[str] | None, workers: int | None, trials_per_gpu: int, n_trials: int | None
) -> list[WorkerSpec]:
    """Workers for the GPUs (`trials_per_gpu` each) or `workers` unpinned ones; trials shared out."""
    slots = [gpu for gpu in gpus for _ in range(trials_per_gpu)] if gpus else [None] * (workers or 1)
    shares = split_trials(n_trials, len(slots))
    return [WorkerSpec(rank, gpu, share) for rank, (gpu, share) in enumerate(zip(slots, shares, strict=True))]


def split_trials(n_trials: int | None, n_workers: int) -> list[int | None]:
    """`n_trials` for the node shared as evenly as possible (None: each runs until the budget)."""
    if n_trials is None:
        return [None] * n_workers
    return [n_trials // n_workers + (rank < n_trials % n_workers) for rank in range(n_workers)]


def worker_env(spec: WorkerSpec, shared_gpu: bool) -> dict[str, str]:
    """Environment of one worker: its GPU, and memory growth when several share it."""
    env = dict(os.environ)
    if spec.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = spec.gpu
    if shared_gpu:
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_workers(worker_args: list[str], plan: list[WorkerSpec], shared_gpu: bool, stream: TextIO) -> int:
    """Start one `optimize run` process per spec; return 0, or the first failing worker's exit code."""
    processes = []
    for spec in plan:
        command = [
            sys.executable,
            "-m",
            "optimize",
            "run",
            *worker_args,
            "--rank",
            str(spec.rank),
            "--n-workers",
            str(len(plan)),
        ]
        if spec.n_trials is not None:
            if spec.n_trials == 0:
                continue
            command += ["--n-trials", str(spec.n_trials)]
        processes.append(
            (
                spec,
                subprocess.Popen(
                    command,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env=worker_env(spec, shared_gpu),
                    start_new_session=True,
                ),
            )
        )
    received: list[int] = []

    def forward(number: int, frame: object) -> None:
        received.append(number)
        for _, process in processes:
            if process.poll() is None:
                process.send_signal(number)

    previous = {number: signal.signal(number, forward) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        readers = [
            threading.Thread(target=relay, args=(spec.rank, process.stdout, stream)) for spec, process in processes
        ]
        for reader in readers:
            reader.start()
        codes = [process.wait() for _, process in processes]
        for reader in readers:
            reader.join()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    failed = [(spec.rank, code) for (spec, _), code in zip(processes, codes, strict=True) if code != 0]
    for rank, code in failed:
        print(f"[w{rank}] exited with code {code}", file=stream, flush=True)
    if received and not failed:
        return 128 + received[0]
    return failed[0][1] if failed else 0


def relay(rank: int, lines: TextIO, stream: TextIO) -> None:
    for line in lines:
        print(f"[w{rank}] {line.rstrip()}", file=stream, flush=True)
