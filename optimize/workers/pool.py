"""Several worker processes on one node, one study: `optimize run --gpus 0,1 | --workers N`.

Each worker is its own `optimize run` process (pinned to a GPU with `CUDA_VISIBLE_DEVICES`) with
its own rank, so its sampler seed differs. The parent prints every worker's lines prefixed by its
rank, forwards SIGTERM/SIGINT, and exits non-zero when a worker failed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import TextIO

from optimize.errors import UsageError
from optimize.stop_signals import signal_exit_code
from optimize.workers.options import GPU_REQUESTED_ENV

ALL_VISIBLE = "all-visible"


@dataclass(frozen=True)
class WorkerSpec:
    """One worker process: its rank, the GPU it sees (None: no pinning) and its share of trials."""

    rank: int
    gpu: str | None
    n_trials: int | None


def choose_gpus(requested: list[str] | None) -> list[str]:
    """The GPUs to pin workers to: the `requested` indices, each of which must be visible, or every
    visible GPU for None (`all-visible`). Raises UsageError naming what is visible, or that nothing is."""
    visible, source = visible_gpus()
    if not visible:
        wanted = f"GPU {requested[0]} is not visible" if requested else ALL_VISIBLE
        raise UsageError(f"{wanted}: no GPU is visible ({source})")
    if requested is None:
        return visible
    for gpu in requested:
        if gpu not in visible:
            hint = "" if all(name.isdigit() for name in visible) else f"; --gpus {ALL_VISIBLE} uses them all"
            raise UsageError(f"GPU {gpu} is not visible; visible: {', '.join(visible)} ({source}){hint}")
    return requested


def visible_gpus() -> tuple[list[str], str]:
    """The GPUs this job may use, and where that list comes from (for messages).

    `CUDA_VISIBLE_DEVICES` when it is set: indices or GPU-/MIG- UUIDs, up to the first entry that is
    neither (as CUDA reads it: `-1` or `NoDevFiles` hide every GPU); otherwise the GPU numbers that
    `nvidia-smi -L` lists.
    """
    setting = os.environ.get("CUDA_VISIBLE_DEVICES")
    if setting is not None:
        gpus = []
        for entry in (entry.strip() for entry in setting.split(",")):
            if entry.isascii() and entry.isdigit():
                gpus.append(str(int(entry)))
            elif entry.startswith(("GPU-", "MIG-")):
                gpus.append(entry)
            else:
                break
        return gpus, f"CUDA_VISIBLE_DEVICES={setting!r}"
    unset = "CUDA_VISIBLE_DEVICES is not set and nvidia-smi"
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        return [], f"{unset} is not installed"
    except (OSError, subprocess.TimeoutExpired) as error:
        return [], f"{unset} -L failed: {error}"
    if listing.returncode != 0:
        output = (listing.stderr or listing.stdout).strip().splitlines() or [f"exit code {listing.returncode}"]
        return [], f"{unset} -L failed: {output[0]}"
    gpus = re.findall(r"^GPU (\d+):", listing.stdout, flags=re.MULTILINE)
    return gpus, "nvidia-smi -L" if gpus else f"{unset} -L lists none"


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


CPU_THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")


def worker_env(spec: WorkerSpec, shared_gpu: bool, n_workers: int = 1) -> dict[str, str]:
    """Environment of one worker: its GPU, and memory growth when several share it.

    Unpinned workers (`--workers N`) share the CPU: each computes with its share of the cores, since
    N processes each running as many threads as there are cores spend their time switching threads.
    A thread count the user set is kept.
    """
    env = dict(os.environ)
    if spec.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = spec.gpu
        env[GPU_REQUESTED_ENV] = spec.gpu
    elif n_workers > 1 and not any(name in os.environ for name in CPU_THREAD_VARIABLES):
        threads = str(max(1, (os.cpu_count() or 1) // n_workers))
        env.update(TF_NUM_INTRAOP_THREADS=threads, TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS=threads)
    if shared_gpu:
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def idle_workers_note(plan: list[WorkerSpec]) -> str | None:
    """What a pool of more workers than `--n-trials` starts: a worker whose share is 0 trials does not start."""
    idle = [spec for spec in plan if spec.n_trials == 0]
    if not idle:
        return None
    n_trials = sum(spec.n_trials for spec in plan)
    return f"note: {n_trials} trial(s) for {len(plan)} workers: {len(plan) - len(idle)} start, one trial or more each"


def run_worker_pool(
    worker_args: list[str], plan: list[WorkerSpec], shared_gpu: bool, stream: TextIO, subcommand: str = "run"
) -> int:
    """Start one `optimize SUBCOMMAND` process per spec (`run`, `confirm`); return 0, or the first failing
    worker's exit code."""
    if (note := idle_workers_note(plan)) is not None:
        print(note, file=stream, flush=True)
    processes = []
    for spec in plan:
        command = [
            sys.executable,
            "-P",
            "-m",
            "optimize",
            subcommand,
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
                    env=worker_env(spec, shared_gpu, len(plan)),
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
        return signal_exit_code(received[0])
    return failed[0][1] if failed else 0


def relay(rank: int, lines: TextIO, stream: TextIO) -> None:
    for line in lines:
        print(f"[w{rank}] {line.rstrip()}", file=stream, flush=True)
