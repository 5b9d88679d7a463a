"""Orchestration cost without training: Optuna storage under many worker processes reporting every step.

Each worker process runs `--trials-per-worker` trials of a cheap objective (a random point, then 100
steps of `trial.report` + `trial.should_prune` under the ASHA pruner, honouring its decision). All
workers start together at a barrier. Storages: SQLite (WAL and busy timeout, through
`optimize.storage.open_storage`), PostgreSQL and MariaDB (a fresh database per run, dropped after),
Optuna's journal file, and in-memory storage (one process only: it cannot be shared). The sampler is
random, so the figures are storage and pruner cost, not TPE's.

    python bench/storage.py                          # every storage, 1, 2, 4, 8, 16 workers (< 10 min)
    python bench/storage.py --storages postgresql --workers 16 --trials-per-worker 20
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import optuna
import sqlalchemy
from _common import add_output_args, describe_machine, markdown_table, publish
from sqlalchemy.engine import make_url

from optimize.search.config import PrunerConfig
from optimize.search.study import DIRECTION, make_pruner
from optimize.storage import open_storage

STORAGES = ("inmemory", "sqlite", "postgresql", "mariadb", "journal")
SERVERS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}
STUDY = "bench"
PRUNER = PrunerConfig(kind="asha", min_resource=10, reduction_factor=3)
GOAL_STORAGE, GOAL_WORKERS, GOAL_P50_MS = "postgresql", 16, 10.0
RUN_TIMEOUT_SECONDS = 600  # a worker that dies without reporting fails the run instead of hanging it


@dataclass
class WorkerResult:
    """What one worker measured: per-step latency and CPU time (s), finished trials, errors, its time span."""

    latencies: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)
    trials: int = 0
    errors: Counter = field(default_factory=Counter)
    started: float = math.nan
    finished: float = math.nan


@dataclass
class RunResult:
    storage: str
    workers: int
    results: list[WorkerResult]

    @property
    def steps(self) -> int:
        return sum(len(result.latencies) for result in self.results)

    def percentile_ms(self, q: float, what: str = "latencies") -> float:
        """Percentile `q` of every worker's step latencies (or `cpu_times`), in milliseconds."""
        values = [value for result in self.results for value in getattr(result, what)]
        return 1000 * float(np.percentile(values, q)) if values else math.nan

    @property
    def trials_per_second(self) -> float:
        span = max(r.finished for r in self.results) - min(r.started for r in self.results)
        return sum(r.trials for r in self.results) / span if span > 0 else math.nan

    @property
    def errors(self) -> Counter:
        return sum((result.errors for result in self.results), Counter())


def step_value(x: float, step: int) -> float:
    """A learning curve: the point's quality, approached as steps go by, so ASHA has something to rank."""
    return x * (1 - math.exp(-step / 20))


def run_trials(study: optuna.Study, n_trials: int, steps: int, result: WorkerResult) -> None:
    """The cheap objective, trial by trial with ask/tell, so an exception is counted and the worker goes on."""
    for _ in range(n_trials):
        trial = None
        try:
            trial = study.ask()
            x = trial.suggest_float("x", 0.0, 1.0)
            state, value = optuna.trial.TrialState.COMPLETE, step_value(x, steps)
            for step in range(1, steps + 1):
                started, cpu_started = time.perf_counter(), time.process_time()
                trial.report(step_value(x, step), step)
                prune = trial.should_prune()
                result.latencies.append(time.perf_counter() - started)
                result.cpu_times.append(time.process_time() - cpu_started)
                if prune:
                    state, value = optuna.trial.TrialState.PRUNED, None
                    break
            study.tell(trial, value, state=state)
            result.trials += 1
        except Exception as error:  # noqa: BLE001 - every failure is what this benchmark counts
            result.errors[f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"] += 1


def worker(url: str | None, n_trials: int, steps: int, seed: int, barrier, queue) -> None:
    """One worker process: open the storage and the study, wait for the others, run, send its result."""
    result = WorkerResult()
    try:
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        storage = optuna.storages.InMemoryStorage() if url is None else open_storage(url)
        study = optuna.create_study(
            study_name=STUDY,
            storage=storage,
            sampler=optuna.samplers.RandomSampler(seed=seed),
            pruner=make_pruner(PRUNER, 100),
            direction=DIRECTION,
            load_if_exists=True,
        )
        barrier.wait()
        result.started = time.monotonic()
        run_trials(study, n_trials, steps, result)
    except Exception as error:  # noqa: BLE001
        result.errors[f"{type(error).__name__} at start: {str(error).splitlines()[0][:80]}"] += 1
        traceback.print_exc()
        barrier.abort()
    result.finished = time.monotonic()
    queue.put(result)


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new database `bench_<random>` on the server; yields its URL and drops it afterwards."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(
                    sqlalchemy.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
                )
            connection.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name}"))
        engine.dispose()


@contextmanager
def storage_url(kind: str, servers: dict[str, str]) -> Iterator[str | None]:
    """The URL a run uses: a fresh file or database (on `servers[kind]`) for every run; None for in-memory."""
    if kind == "inmemory":
        yield None
    elif kind in servers:
        with fresh_database(servers[kind]) as url:
            yield url
    else:
        with tempfile.TemporaryDirectory(prefix="bench_storage_") as folder:
            yield f"sqlite:///{folder}/study.db" if kind == "sqlite" else f"{folder}/study.log"


def run(kind: str, n_workers: int, n_trials: int, steps: int, servers: dict[str, str]) -> RunResult:
    """One storage with `n_workers` spawned processes that start at one barrier."""
    context = multiprocessing.get_context("spawn")
    with storage_url(kind, servers) as url:
        if url is not None:  # create the schema and the study once, so workers only join it
            optuna.create_study(study_name=STUDY, storage=open_storage(url), direction=DIRECTION)
        barrier, queue = context.Barrier(n_workers), context.Queue()
        processes = [
            context.Process(target=worker, args=(url, n_trials, steps, rank, barrier, queue))
            for rank in range(n_workers)
        ]
        for process in processes:
            process.start()
        results = [queue.get(timeout=RUN_TIMEOUT_SECONDS) for _ in processes]
        for process in processes:
            process.join()
    return RunResult(kind, n_workers, results)


def table_rows(runs: list[RunResult]) -> list[list[str]]:
    rows = []
    for result in runs:
        rows.append(
            [
                result.storage,
                str(result.workers),
                f"{result.percentile_ms(50):.2f}",
                f"{result.percentile_ms(95):.2f}",
                f"{result.percentile_ms(50, 'cpu_times'):.2f}",
                str(result.steps),
                f"{result.trials_per_second:.1f}",
                format_errors(result.errors),
            ]
        )
    return rows


def format_errors(errors: Counter) -> str:
    """'0', or the count followed by each distinct message and how often it happened."""
    detail = "; ".join(f"{count}× {message}" for message, count in errors.items())
    return f"{sum(errors.values())} ({detail})" if errors else "0"


def goal_line(runs: list[RunResult]) -> str:
    """✓/✗ for 'p50 under 10 ms with 16 workers on PostgreSQL, zero errors' (or why it was not measured)."""
    goal = f"p50 under {GOAL_P50_MS:g} ms with {GOAL_WORKERS} workers on PostgreSQL, zero errors"
    match = [r for r in runs if r.storage == GOAL_STORAGE and r.workers == GOAL_WORKERS]
    if not match:
        return f"goal: {goal}: not measured in this run"
    result = match[0]
    p50, errors = result.percentile_ms(50), sum(result.errors.values())
    mark = "✓" if p50 < GOAL_P50_MS and errors == 0 else "✗"
    return f"goal: {goal}: {mark} (p50 {p50:.2f} ms, {errors} errors)"


def parse_list(text: str, convert: Callable[[str], object]) -> list:
    return [convert(item.strip()) for item in text.split(",") if item.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4,8,16", help="comma-separated worker counts (default 1,2,4,8,16)")
    parser.add_argument("--storages", default=",".join(STORAGES), help=f"comma-separated, of {', '.join(STORAGES)}")
    parser.add_argument("--trials-per-worker", type=int, default=5, help="trials each worker runs (default 5)")
    parser.add_argument("--steps", type=int, default=100, help="steps reported per trial (default 100)")
    for kind, url in SERVERS.items():
        parser.add_argument(f"--{kind}-url", default=url, help=f"admin URL of the {kind} server (default {url})")
    add_output_args(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.workers, args.storages, args.trials_per_worker, args.steps = "2", "inmemory,sqlite,journal", 1, 10
    storages, worker_counts = parse_list(args.storages, str), parse_list(args.workers, int)
    unknown = set(storages) - set(STORAGES)
    if unknown:
        parser.error(f"unknown storage {', '.join(sorted(unknown))}; known: {', '.join(STORAGES)}")
    machine = describe_machine()
    servers = {kind: getattr(args, f"{kind}_url") for kind in SERVERS}
    runs = []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for kind in storages:
        for n_workers in [1] if kind == "inmemory" else worker_counts:  # in-memory storage lives in one process
            started = time.perf_counter()
            runs.append(run(kind, n_workers, args.trials_per_worker, args.steps, servers))
            print(f"  {kind} × {n_workers}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    body = "\n\n".join(
        [
            f"{args.trials_per_worker} trials per worker, up to {args.steps} steps each (ASHA min_resource "
            f"{PRUNER.min_resource}, reduction_factor {PRUNER.reduction_factor}; pruned trials stop early), random "
            "sampler. Latency: wall time of one `trial.report` + `trial.should_prune`, in the worker; worker CPU: "
            "the worker process's own CPU time for the same calls (the rest is waiting: for the database, a lock or "
            "a core). Trials/s: finished trials of all workers ÷ time from the barrier to the last worker's end. "
            f"In-memory storage: single process only. Workers, database servers and other jobs share "
            f"{os.cpu_count()} CPU cores here.",
            markdown_table(
                [
                    "storage",
                    "workers",
                    "p50 (ms)",
                    "p95 (ms)",
                    "worker CPU p50 (ms)",
                    "steps timed",
                    "trials/s",
                    "errors",
                ],
                table_rows(runs),
            ),
            f"- {goal_line(runs)}",
        ]
    )
    publish(args, "Storage: orchestration cost" + (" (smoke)" if args.smoke else ""), body, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
