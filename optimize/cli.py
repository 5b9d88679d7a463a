"""The `optimize` command line. Heavy modules load inside each command so `--help` stays instant."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence

from .errors import UserError

DEFAULT_DASHBOARD_PORT = 8080


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    quiet_libraries(verbose=getattr(args, "verbose", False))
    try:
        return args.command(args) or 0
    except UserError as error:
        print(f"optimize {args.name}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"optimize {args.name}: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optimize",
        description="Hyperparameter search for microbead segmentation U-Nets (Optuna + Keras).",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(command=handler, name=name)
        return sub

    def study_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--study", required=True, help="study name: studies/NAME.toml (or a path to a .toml)")
        sub.add_argument(
            "--storage",
            help="SQLAlchemy URL or journal .log path (default: $OPTIMIZE_STORAGE, else sqlite:///studies/NAME.db)",
        )

    run = command("run", cmd_run, "Create or join the study and run trials.")
    study_options(run)
    run.add_argument("--n-trials", type=positive_int, help="trials this process runs (default: until the budget)")
    run.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    run.add_argument("--seed", type=int, help="sampler seed (each worker uses seed + rank)")
    run.add_argument("--data", help="folder with images/ and masks/, instead of the config's data")
    run.add_argument("--verbose", action="store_true", help="Keras' per-epoch output and Optuna's logs")
    run.add_argument(
        "--compile-cache",
        metavar="DIR",
        help="JAX backend: keep compiled steps here for later trials and workers "
        "(default: $OPTIMIZE_COMPILE_CACHE, else studies/.compile_cache; 'off' disables)",
    )
    run.add_argument("--gpus", help="one worker process per GPU: 0,1,2,3 or all-visible")
    run.add_argument("--workers", type=positive_int, help="N worker processes without GPU pinning")
    run.add_argument("--trials-per-gpu", type=positive_int, default=1, help="workers sharing each GPU (default 1)")
    run.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    run.add_argument("--n-workers", type=positive_int, default=1, help=argparse.SUPPRESS)

    export = command("export-best", cmd_export_best, "Write the best hyperparameters and every trial's history.")
    study_options(export)
    export.add_argument("--out", help="output folder (default: studies/NAME/export/)")

    report = command("report", cmd_report, "Write the study's analysis: REPORT.md, report.html and CSV tables.")
    study_options(report)
    report.add_argument("--out", help="output folder (default: studies/NAME/report/)")

    dashboard = command("dashboard", cmd_dashboard, "Serve optuna-dashboard on the study's storage.")
    study_options(dashboard)
    dashboard.add_argument("--host", default="127.0.0.1")
    dashboard.add_argument("--port", type=int, default=DEFAULT_DASHBOARD_PORT)

    status = command("status", cmd_status, "Trials per state, best so far and running trials.")
    study_options(status)

    stats = command("data-stats", cmd_data_stats, "Statistics of a data folder (objects per image, foreground).")
    stats.add_argument("dir", help="folder with images/ and masks/")
    stats.add_argument("--image-size", type=positive_int, help="resize to this size first")

    make = command("make-data", cmd_make_data, "Write a synthetic microbead data set as PNG files.")
    make.add_argument("--out", required=True, help="output folder (gets images/ and masks/)")
    make.add_argument("--n", type=positive_int, default=96, help="number of images (default 96)")
    make.add_argument("--size", type=positive_int, default=256, help="image size in pixels (default 256)")
    make.add_argument("--seed", type=int, default=0)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from .run import RunOptions, run_worker

    options = RunOptions(
        study=args.study,
        n_trials=args.n_trials,
        timeout=args.timeout,
        storage=args.storage,
        seed=args.seed,
        data=args.data,
        verbose=args.verbose,
        compile_cache=args.compile_cache,
        rank=args.rank,
        n_workers=args.n_workers,
    )
    if not args.gpus and (args.workers or 1) == 1:
        return run_worker(options)
    from .workers import plan_workers, run_workers, visible_gpus

    if args.gpus and args.workers:
        raise UserError("give either --gpus or --workers, not both")
    gpus = visible_gpus(args.gpus) if args.gpus else None
    plan = plan_workers(gpus, args.workers, args.trials_per_gpu, args.n_trials)
    return run_workers(options.worker_args(), plan, shared_gpu=args.trials_per_gpu > 1, stream=sys.stdout)


def cmd_export_best(args: argparse.Namespace) -> int:
    from .export import export_best

    study, url = existing_study(args)
    out = export_best(study, url, args.out)
    print(f"wrote {out}/best_hyperparameters.json, search_results.csv and histories/")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    study, url = existing_study(args)
    out = write_report(study, url, args.out)
    tables = sorted((out / "tables").glob("*.csv"))
    print(f"wrote {out / 'REPORT.md'}\nwrote {out / 'report.html'}\nwrote {len(tables)} tables in {out / 'tables'}/")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from .dashboard import serve_dashboard

    study, url = existing_study(args)
    serve_dashboard(study._storage, study.study_name, args.host, args.port)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .status import status_text

    study, _ = existing_study(args)
    print(status_text(study))
    return 0


def cmd_data_stats(args: argparse.Namespace) -> int:
    from data import DataError, dataset_stats, format_stats_table, load_dataset

    try:
        _, masks = load_dataset(args.dir, image_size=args.image_size)
    except DataError as error:
        raise UserError(str(error)) from None
    print(format_stats_table(dataset_stats(masks)))
    return 0


def cmd_make_data(args: argparse.Namespace) -> int:
    from data import write_microbeads

    out = write_microbeads(args.out, args.n, size=args.size, seed=args.seed)
    print(f"wrote {args.n} synthetic {args.size}x{args.size} images to {out}/images and masks to {out}/masks")
    return 0


def existing_study(args: argparse.Namespace):
    """The study named by `--study` in the resolved storage, opened without heartbeats (read-mostly)."""
    from .storage import open_storage, resolve_url
    from .study import load_existing_study

    name = args.study.removesuffix(".toml").rsplit("/", 1)[-1]
    url = resolve_url(name, args.storage)
    return load_existing_study(name, open_storage(url, create=False)), url


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def quiet_libraries(verbose: bool) -> None:
    """TensorFlow's C++ logs and Optuna's per-trial INFO lines off unless `--verbose`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose else "3")
    if not verbose:
        import_quietly("keras")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def import_quietly(module: str) -> None:
    """Import `module` with the process's stderr (file descriptor 2) held in a temporary file.

    Importing TensorFlow prints start-up lines from C++ (oneDNN on AVX-512 CPUs, CPU features)
    before any log level applies; they would bury a one-line error. Replayed if the import fails.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            importlib.import_module(module)
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
