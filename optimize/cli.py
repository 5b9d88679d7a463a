"""The `optimize` command line. Heavy modules load inside each command so `--help` stays instant."""

from __future__ import annotations

import argparse
import errno
import logging
import math
import os
import re
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from optimize.errors import UsageError, UserError
from optimize.keras_import import import_keras
from optimize.limits import (
    IMAGE_SIZE_REASON,
    MAX_IMAGE_SIZE,
    MAX_PREDICT_BATCH,
    MAX_SEED,
    MAX_WORKERS,
    MIN_SYNTHETIC_SIZE,
)
from optimize.stop_signals import raise_if_stopped, signal_exit_code, stop_behind, stop_signals_unwind

DEFAULT_DASHBOARD_PORT = 8080
PATH_ERROR_EXIT = 2
ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
"""OS errors about the user's disk or permissions even when they name no file (a full disk while writing)."""
PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The folder holding the project's packages (optimize, data, models, losses)."""
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code.

    What a person can act on ends as one line on stderr: bad input (`UserError`), a file or folder
    that cannot be read or written (exit 2), and a stop signal at any moment, even while Keras loads
    (SIGINT exits 130, SIGTERM 143). Only a bug in our own code shows a traceback.
    """
    prog = "optimize"
    with stop_signals_unwind():
        try:
            args = build_parser().parse_args(argv)
            prog = f"optimize {args.name}"
            warnings_in_one_line(prog)
            if hasattr(args, "storage"):
                check_storage_option(args)
            quiet_libraries(verbose=getattr(args, "verbose", False))
            exit_code = args.command(args) or 0
            raise_if_stopped()
            return exit_code
        except UserError as error:
            print(f"{prog}: error: {error}", file=sys.stderr)
            return error.exit_code
        except KeyboardInterrupt as stop:
            return interrupted(prog, stop)
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return signal_exit_code(signal.SIGPIPE)
        except Exception as error:
            if (stop := stop_behind(error)) is not None:
                return interrupted(prog, stop)
            if isinstance(error, OSError) and (error.filename is not None or error.errno in ENVIRONMENT_ERRNOS):
                print(f"{prog}: error: {os_problem(error)}", file=sys.stderr)
                return PATH_ERROR_EXIT
            raise


def warnings_in_one_line(prog: str) -> None:
    """Our own warnings (an RGB image made grey, a split that cannot stratify) as `optimize run: warning: ...`,
    without Python's file:line and source line; other libraries' warnings keep them."""
    default = warnings.formatwarning
    ours = tuple(str(PROJECT_ROOT / package) + os.sep for package in ("optimize", "data", "models", "losses"))

    def one_line(message, category, filename, lineno, line=None) -> str:
        if str(filename).startswith(ours):
            return f"{prog}: warning: {message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = one_line


def interrupted(prog: str, stop: KeyboardInterrupt) -> int:
    """Say which stop signal ended the command; its exit code, as a shell reports a process that signal ended."""
    number = getattr(stop, "signal_number", signal.SIGINT)
    print(f"{prog}: interrupted by {signal.Signals(number).name}", file=sys.stderr)
    return signal_exit_code(number)


def os_problem(error: OSError) -> str:
    """One line for an OS error about a user's file or folder: the path(s) and the system's reason."""
    paths = " -> ".join(str(name) for name in (error.filename, error.filename2) if name is not None)
    return f"{paths}: {error.strerror}" if paths else str(error.strerror or error)


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

    def worker_options(sub: argparse.ArgumentParser, n_workers_default: int | None) -> None:
        """The options of a command that trains, `run` and `confirm`: output, devices, workers and models."""
        sub.add_argument(
            "--verbose", action="store_true", help="Keras' per-epoch output and Optuna's logs (default: off)"
        )
        sub.add_argument(
            "--compile-cache",
            type=non_empty,
            metavar="DIR",
            help="JAX backend: keep compiled steps here for later trials and workers "
            "(default: $OPTIMIZE_COMPILE_CACHE, else studies/.compile_cache; 'off' disables)",
        )
        sub.add_argument(
            "--gpus",
            type=gpu_selection,
            help="one worker process per GPU: indices as CUDA_VISIBLE_DEVICES or nvidia-smi lists them (0,1,2,3), "
            "or all-visible (default: one worker in this process, on whatever device Keras finds)",
        )
        sub.add_argument(
            "--workers",
            metavar="N",
            type=worker_count,
            help=f"N worker processes without GPU pinning, 1 to {MAX_WORKERS} (default: 1)",
        )
        sub.add_argument(
            "--trials-per-gpu",
            metavar="N",
            type=worker_count,
            help="workers sharing each GPU, with --gpus (default: 1)",
        )
        sub.add_argument(
            "--allow-cpu",
            action="store_true",
            help="train a study sized for a GPU (512 px images, wide models, mixed precision) on the CPU anyway "
            "(default: such a study stops before its first trial when no GPU is visible, with an estimate of its "
            "time)",
        )
        artifacts_option(sub)
        sub.add_argument("--rank", type=non_negative_int, default=0, help=argparse.SUPPRESS)
        sub.add_argument("--n-workers", type=positive_int, default=n_workers_default, help=argparse.SUPPRESS)

    def artifacts_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--artifacts",
            type=non_empty,
            metavar="DIR",
            help="folder of the best trials' models, one folder shared by every node (default: $OPTIMIZE_ARTIFACTS, "
            "else the study file's [artifacts] dir, else NAME.artifacts/ beside the SQLite file)",
        )

    def study_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--study",
            type=non_empty,
            required=True,
            metavar="NAME",
            help="study name: studies/NAME.toml (or a path to a .toml); required",
        )
        sub.add_argument(
            "--storage",
            type=non_empty,
            metavar="URL",
            help="SQLAlchemy URL or journal .log path (default: $OPTIMIZE_STORAGE, else sqlite:///studies/NAME.db)",
        )

    run = command("run", cmd_run, "Create or join the study and run trials.")
    study_options(run)
    run.add_argument(
        "--n-trials",
        metavar="N",
        type=positive_int,
        help="trials this process runs (default: until the study's [budget] max_trials, or until stopped)",
    )
    run.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=positive_seconds,
        help="stop starting trials after this many seconds (default: no limit)",
    )
    run.add_argument(
        "--seed",
        type=seed,
        help="sampler seed; each worker uses seed + rank, or, joining a study that holds trials, a seed drawn from "
        "seed, rank and their number (default: the config's [sampler] seed)",
    )
    run.add_argument(
        "--data",
        type=non_empty,
        metavar="DIR",
        help="folder with images/ and masks/, instead of the config's data (default: the config's [data])",
    )
    run.add_argument(
        "--new-study",
        metavar="NAME",
        type=new_study_name,
        help="run the config's study as a new study NAME, in the same --storage or else studies/NAME.db, leaving "
        "the old study as it is; workers that join it give the same --study and --new-study, read-only commands "
        "and confirm take --study NAME (default: the study's own name)",
    )
    worker_options(run, n_workers_default=1)

    confirm = command(
        "confirm",
        cmd_confirm,
        "Re-train the study's best configurations with new seeds (or on cross-validation folds), to full length "
        "without pruning, as trials of the study NAME-confirm in the same storage; ends with mean ± std per "
        "configuration. Every node runs the same command.",
    )
    study_options(confirm)
    confirm.add_argument(
        "--top-k",
        metavar="K",
        type=positive_int,
        default=3,
        help="confirm the K best COMPLETE trials with distinct parameters (default: %(default)s)",
    )
    repeats = confirm.add_mutually_exclusive_group()
    repeats.add_argument(
        "--seeds",
        metavar="N",
        type=positive_int,
        help="re-train each N times with new seeds of weights and data order, on the same split (default: 3)",
    )
    repeats.add_argument(
        "--folds",
        metavar="F",
        type=fold_count,
        help="instead of seeds: train each on F folds stratified by objects per image, fold i validating on "
        "its images, F-fold cross-validation (default: seeds, not folds)",
    )
    confirm.add_argument(
        "--data",
        type=non_empty,
        metavar="DIR",
        help="folder with images/ and masks/, the study's own data elsewhere (default: the study's stored [data])",
    )
    worker_options(confirm, n_workers_default=None)

    export = command(
        "export-best",
        cmd_export_best,
        "Write the best hyperparameters, every trial's history and the best trial's model (best_model.keras).",
    )
    study_options(export)
    export.add_argument("--out", type=non_empty, metavar="DIR", help="output folder (default: studies/NAME/export/)")
    artifacts_option(export)

    imports = command(
        "import-results",
        cmd_import_results,
        "Add an earlier search's results as COMPLETE trials of the study (created from its study file if new), "
        "so that TPE starts from them: the users' search_results_final.csv with its history_*.csv files, or "
        "export-best's search_results.csv. Importing a row twice adds nothing.",
    )
    study_options(imports)
    imports.add_argument("file", type=non_empty, metavar="FILE", help="the results CSV file")
    imports.add_argument(
        "--allow-different-data",
        action="store_true",
        help="import even when the file's trials trained on other images than the study's, or it does not say "
        "(the users' files never do) (default: refuse)",
    )

    report = command("report", cmd_report, "Write the study's analysis: REPORT.md, report.html and CSV tables.")
    study_options(report)
    report.add_argument("--out", type=non_empty, metavar="DIR", help="output folder (default: studies/NAME/report/)")

    dashboard = command("dashboard", cmd_dashboard, "Serve optuna-dashboard on the study's storage.")
    study_options(dashboard)
    artifacts_option(dashboard)
    dashboard.add_argument(
        "--host",
        type=non_empty,
        default="127.0.0.1",
        help="address to serve on; 0.0.0.0 serves every network interface (default: %(default)s, this machine only)",
    )
    dashboard.add_argument(
        "--port", type=port, default=DEFAULT_DASHBOARD_PORT, help="TCP port to serve on (default: %(default)s)"
    )

    status = command("status", cmd_status, "Trials per state, best so far and running trials.")
    study_options(status)

    stats = command(
        "data-stats", cmd_data_stats, "Statistics of a data folder (objects per image, foreground fraction, bead size)."
    )
    stats.add_argument("dir", type=non_empty, help="folder with images/ and masks/")
    stats.add_argument(
        "--image-size",
        metavar="PX",
        type=image_size,
        help="resize to this size first (default: the images' own size)",
    )

    evaluate = command(
        "evaluate",
        cmd_evaluate,
        "Bead-level metrics of predicted masks against a data folder's masks: beads matched one-to-one by IoU; "
        "precision, recall, F1, AP, matched IoU, panoptic quality and count error per image and overall.",
    )
    evaluate.add_argument(
        "--pred",
        type=non_empty,
        required=True,
        metavar="DIR",
        help="folder of predicted masks (PNG or TIFF; binary, or label images as Cellpose and StarDist write them), "
        "named like the masks they predict (the extension may differ); required",
    )
    evaluate.add_argument(
        "--data",
        type=non_empty,
        required=True,
        metavar="DIR",
        help="data folder whose masks/ hold the true beads; required",
    )
    evaluate.add_argument(
        "--iou",
        nargs="+",
        type=iou_threshold,
        default=[0.5],
        metavar="T",
        help="IoU thresholds at which a predicted bead matches a true bead, each in 0.5..1 (default: 0.5)",
    )
    evaluate.add_argument(
        "--csv", type=non_empty, metavar="FILE", help="also write the per-image rows to this CSV file (default: none)"
    )

    predict = command(
        "predict",
        cmd_predict,
        "Segment a folder of images with a saved model: masks and label images as PNG, bead counts and areas as CSV.",
    )
    predict.epilog = (
        "Writes OUT/masks/<stem>.png (0/255), OUT/labels/<stem>.png (beads as labels 1..n, uint16), OUT/beads.csv "
        "(per image: size, bead count, foreground fraction, mean and median bead area in px) and OUT/bead_areas.csv "
        "(per bead: area and centre). Images are read as training reads them (grey, [0, 1] by bit depth). An image "
        "of the model's input size is one tile. Any other image is cut into overlapping tiles of the model's input "
        "size, starting every (size - overlap) px, the last tile flush with the far edge; an image smaller than a "
        "tile is padded by reflection and the padding cropped. Overlapping probabilities are averaged with weights "
        "that fall linearly towards each tile's edges over the overlap. A pixel is bead above --threshold; each "
        "4-connected component is one bead."
    )
    predict.add_argument(
        "--model",
        type=non_empty,
        required=True,
        metavar="FILE",
        help="a .keras model, e.g. best_model.keras from export-best; required",
    )
    predict.add_argument(
        "--images",
        type=non_empty,
        required=True,
        metavar="DIR",
        help="folder of images (PNG, TIFF or JPEG) to segment; required",
    )
    predict.add_argument(
        "--out",
        type=non_empty,
        required=True,
        metavar="DIR",
        help="output folder (gets masks/, labels/ and two CSV files); required",
    )
    predict.add_argument(
        "--threshold",
        type=probability_threshold,
        default=0.5,
        metavar="P",
        help="a pixel is bead when its probability is above this, in (0, 1) (default: %(default)s)",
    )
    predict.add_argument(
        "--overlap",
        type=non_negative_int,
        metavar="PX",
        help="overlap of neighbouring tiles in px, smaller than the model's input size (default: a quarter of it)",
    )
    predict.add_argument(
        "--batch-size",
        type=predict_batch_size,
        default=8,
        metavar="N",
        help=f"tiles the model predicts at once, 1 to {MAX_PREDICT_BATCH} (default: %(default)s)",
    )

    warm = command(
        "warm-cache",
        cmd_warm_cache,
        "Compile every program the study's search can draw (architecture x width x depth x micro-batch x "
        "precision) once, into the JAX compile cache, so that the workers of a job array load them instead of "
        "each compiling them: one small job on one GPU before the array starts.",
    )
    warm.add_argument(
        "--study",
        type=non_empty,
        required=True,
        metavar="NAME",
        help="study name: studies/NAME.toml (or a path to a .toml); required",
    )
    warm.add_argument(
        "--data",
        type=non_empty,
        metavar="DIR",
        help="folder with images/ and masks/, instead of the config's data (default: the config's [data])",
    )
    warm.add_argument(
        "--compile-cache",
        type=non_empty,
        metavar="DIR",
        help="the cache to fill (default: $OPTIMIZE_COMPILE_CACHE, else studies/.compile_cache), as the workers use",
    )
    warm.add_argument(
        "--allow-cpu",
        action="store_true",
        help="compile a study sized for a GPU on the CPU anyway (default: refused when no GPU is visible)",
    )
    warm.add_argument("--list", action="store_true", help="only list the programs; compile nothing (default: off)")

    make = command("make-data", cmd_make_data, "Write a synthetic microbead data set as PNG files.")
    make.add_argument(
        "--out", type=non_empty, required=True, metavar="DIR", help="output folder (gets images/ and masks/); required"
    )
    make.add_argument("--n", type=positive_int, default=96, help="number of images (default: %(default)s)")
    make.add_argument(
        "--size", metavar="PX", type=synthetic_size, default=256, help="image size in pixels (default: %(default)s)"
    )
    make.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="random seed: the same seed writes the same images (default: %(default)s)",
    )

    plan = command(
        "new-study",
        cmd_new_study,
        "Plan a study from a data folder: write studies/NAME.toml with settings derived from the data, each with "
        "its reason.",
    )
    plan.add_argument("study_name", metavar="NAME", type=new_study_name, help="name of the new study")
    plan.add_argument(
        "--data", type=non_empty, required=True, metavar="DIR", help="folder with images/ and masks/; required"
    )
    plan.add_argument(
        "--image-size",
        metavar="PX",
        type=image_size,
        help="train at this size: resize the images first (default: the images' own size)",
    )
    plan.add_argument(
        "--device",
        choices=("gpu", "cpu"),
        help="plan for a GPU or a CPU (default: gpu when one is visible here, else cpu)",
    )
    plan.add_argument("--force", action="store_true", help="overwrite an existing study file (default: refuse)")
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    """Check the study file, then train here (one worker) or start worker processes (`--workers`, `--gpus`).

    A config or data error ends the command before Keras loads (in a second, not after Keras' start-up),
    and once, not in every worker. The process that trains then imports Keras before anything else does, so
    that TensorFlow's start-up lines are held back; a pool's parent never loads it.
    """
    from optimize.search.config import load_config
    from optimize.training.dataset import load_study_data
    from optimize.workers.options import RunOptions

    options = RunOptions(
        study=args.study,
        n_trials=args.n_trials,
        timeout=args.timeout,
        storage=args.storage,
        seed=args.seed,
        data=args.data,
        new_study=args.new_study,
        verbose=args.verbose,
        compile_cache=args.compile_cache,
        allow_cpu=args.allow_cpu,
        artifacts=args.artifacts,
        rank=args.rank,
        n_workers=args.n_workers,
    )
    check_worker_flags(args)
    config = load_config(args.study)
    if args.seed is None and config.sampler.seed is not None and config.sampler.seed + args.rank > MAX_SEED:
        raise UserError(
            f"{config.path} [sampler] seed = {config.sampler.seed}: this worker (rank {args.rank}) would use seed "
            f"{config.sampler.seed + args.rank}, above {MAX_SEED}; use at most {MAX_SEED - args.rank}"
        )
    data = load_study_data(config, args.data)
    if not args.gpus and (args.workers or 1) == 1:
        import_keras(quiet=not args.verbose)
        from optimize.workers.worker import run_worker

        return run_worker(options, config=config, data=data)
    del data  # checked; each worker loads its own
    from optimize.storage import checkpoint_sqlite, resolve_url
    from optimize.workers.pool import plan_workers, run_worker_pool

    trials_per_gpu = args.trials_per_gpu or 1
    plan = plan_workers(args.gpus, args.workers, trials_per_gpu, args.n_trials)
    seed = args.seed if args.seed is not None else config.sampler.seed
    if seed is not None and seed + len(plan) - 1 > MAX_SEED:
        given = f"--seed {seed}" if args.seed is not None else f"{config.path} [sampler] seed = {seed}"
        raise UsageError(
            f"{given}: worker {len(plan) - 1} would use seed {seed + len(plan) - 1}, "
            f"above {MAX_SEED}; use at most {MAX_SEED - len(plan) + 1}"
        )
    code = run_worker_pool(options.worker_args(), plan, shared_gpu=trials_per_gpu > 1, stream=sys.stdout)
    checkpoint_sqlite(resolve_url(args.new_study or config.name, args.storage))
    return code


def cmd_confirm(args: argparse.Namespace) -> int:
    """Re-train the study's top configurations in its companion study (see `optimize.workers.confirm`): here
    (one worker) or in worker processes (`--workers`, `--gpus`), as `run` does."""
    from optimize.workers.confirm import ConfirmOptions, run_confirm

    check_worker_flags(args)
    options = ConfirmOptions(
        study=study_name(args),
        top_k=args.top_k,
        seeds=args.seeds,
        folds=args.folds,
        storage=args.storage,
        data=args.data,
        verbose=args.verbose,
        compile_cache=args.compile_cache,
        allow_cpu=args.allow_cpu,
        artifacts=args.artifacts,
        rank=args.rank,
        n_workers=args.n_workers,
    )
    pool = None
    if args.gpus or (args.workers or 1) > 1:
        from optimize.workers.pool import plan_workers

        pool = plan_workers(args.gpus, args.workers, args.trials_per_gpu or 1, None)
    return run_confirm(options, sys.stdout, pool, shared_gpu=(args.trials_per_gpu or 1) > 1)


def check_worker_flags(args: argparse.Namespace) -> None:
    """`--gpus` or `--workers`, `--trials-per-gpu` only with `--gpus`, and `--compile-cache DIR` only under JAX
    (`run` and `confirm`)."""
    from optimize.keras_import import keras_backend

    if args.gpus and args.workers:
        raise UsageError("give either --gpus or --workers, not both")
    if args.trials_per_gpu and not args.gpus:
        raise UsageError(f"--trials-per-gpu {args.trials_per_gpu} needs --gpus; without GPUs use --workers N")
    backend = keras_backend()
    if args.compile_cache not in (None, "off") and backend != "jax":
        raise UsageError(
            f"--compile-cache {args.compile_cache}: the {backend} backend keeps no compile cache; it serves the JAX "
            "backend (KERAS_BACKEND=jax)"
        )


def cmd_export_best(args: argparse.Namespace) -> int:
    from optimize.results.export import export_best

    study, url = existing_study(args)
    out, summary = export_best(study, url, args.out, args.artifacts)
    model, confirmation = summary["model"], summary["confirmation"]
    if confirmation is not None:
        import pandas as pd

        from optimize.results.confirmation import format_confirmation

        print(format_confirmation(pd.DataFrame(confirmation["configurations"])))
        print(confirmation["summary"])
    print(f"wrote {out}/best_hyperparameters.json, search_results.csv and histories/")
    if model["file"]:
        print(f"wrote {out}/{model['file']}: the model of trial {model['trial_number']}, sha256 {model['sha256']}")
    else:
        print(f"no best_model.keras: {model['reason']}")
    return 0


def cmd_import_results(args: argparse.Namespace) -> int:
    """Read and check the whole file first (`optimize.search.imports`), then the study's data; create or join the
    study as `run` does (its settings and data recorded or compared) and add the trials it does not hold yet."""
    from optimize.search.config import load_config
    from optimize.search.imports import add_imported, data_problem, import_summary, read_results

    config = load_config(args.study)
    plan = read_results(args.file, config)
    result = None
    if plan.planned:
        from optimize.search.study import (
            budget_reached,
            budget_used,
            create_or_join,
            follow_recorded_pruner,
            record_study_attrs,
        )
        from optimize.storage import open_storage, resolve_url
        from optimize.training.dataset import load_study_data

        data = load_study_data(config)
        problem = data_problem(plan, data.stats)
        if problem and not args.allow_different_data:
            raise UserError(f"{problem}; if its results hold for the study's data, add --allow-different-data")
        storage = open_storage(resolve_url(config.name, args.storage))
        config, followed = follow_recorded_pruner(config, storage)
        study, created = create_or_join(config, storage)
        if followed is not None:
            print(followed)
        print(record_study_attrs(study, config, data, created=created))
        result = add_imported(study, plan)
        if problem:  # said once the trials are in: a study that refuses them makes it untrue
            print(f"warning: {problem}; imported all the same (--allow-different-data)")
        elif args.allow_different_data:
            print("note: --allow-different-data was not needed: the file's data match the study's")
    print(import_summary(plan, result, config.name))
    if result and result.added and budget_reached(study, config.budget.max_trials):
        print(
            f"note: the study's budget is used: {budget_used(study)} of max_trials = {config.budget.max_trials} "
            f"trials, imported ones included; `optimize run` starts none until [budget] max_trials in "
            f"{config.path} is raised"
        )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from optimize.results.report import write_report

    study, url = existing_study(args)
    out = write_report(study, url, args.out)
    tables = sorted((out / "tables").glob("*.csv"))
    pngs = sorted((out / "figures").glob("*.png"))
    print(f"wrote {out / 'REPORT.md'}\nwrote {out / 'report.html'}\nwrote {len(tables)} tables in {out / 'tables'}/")
    print(f"wrote {len(pngs)} figures in {out / 'figures'}/")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from optimize.results.dashboard import serve_dashboard

    study, url = existing_study(args, any_objective=True)
    serve_dashboard(study, url, args.artifacts, args.host, args.port)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from optimize.results.status import status_text

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


def cmd_evaluate(args: argparse.Namespace) -> int:
    import csv

    from data import DataError, evaluate_objects, format_object_table, load_mask_pairs

    repeated = sorted({threshold for threshold in args.iou if args.iou.count(threshold) > 1})
    if repeated:
        raise UsageError(f"--iou {repeated[0]:g} is given twice; give each threshold once")
    if args.csv:
        check_file_to_write(Path(args.csv), "--csv")
    try:
        names, true_masks, pred_masks = load_mask_pairs(args.data, args.pred)
    except DataError as error:
        raise UserError(str(error)) from None
    evaluation = evaluate_objects(true_masks, pred_masks, args.iou, names)
    print(format_object_table(evaluation))
    if args.csv:
        rows = evaluation.rows()
        with open(args.csv, "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {len(rows)} rows to {args.csv}")
    return 0


def check_file_to_write(path: Path, flag: str) -> None:
    """UserError, before any work, when `path` cannot be written as a file: a folder, or in a missing folder."""
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; expected a file name to write")
    if not path.parent.is_dir():
        raise UserError(f"{flag} {path}: the folder {path.parent} does not exist")


def cmd_predict(args: argparse.Namespace) -> int:
    """Check the paths before Keras loads (quietly), then segment every image; see `optimize.inference.predict`."""
    from optimize.inference.predict import check_out, image_inputs, predict_folder

    files = image_inputs(args.model, args.images)
    check_out(args.out)
    import_keras()
    summary = predict_folder(
        args.model, files, args.out, threshold=args.threshold, overlap=args.overlap, batch_size=args.batch_size
    )
    out = summary.out
    print(
        f"wrote {summary.images} masks to {out / 'masks'}/, label images to {out / 'labels'}/, "
        f"{out / 'beads.csv'} and {out / 'bead_areas.csv'} ({summary.beads} beads)"
    )
    return 0


def cmd_warm_cache(args: argparse.Namespace) -> int:
    from optimize.search.config import load_config
    from optimize.workers.warm_cache import warm_cache

    unused = [
        flag for flag, given in (("--compile-cache", args.compile_cache), ("--allow-cpu", args.allow_cpu)) if given
    ]
    if args.list and unused:
        raise UsageError(
            f"--list compiles nothing, so {' and '.join(unused)} would do nothing: leave out one or the other"
        )
    config = load_config(args.study)
    import_keras()
    return warm_cache(
        config,
        sys.stdout,
        data_dir=args.data,
        compile_cache=args.compile_cache,
        allow_cpu=args.allow_cpu,
        list_only=args.list,
    )


def cmd_make_data(args: argparse.Namespace) -> int:
    from data import DataError, write_microbeads

    try:
        out = write_microbeads(args.out, args.n, size=args.size, seed=args.seed)
    except DataError as error:
        raise UserError(str(error)) from None
    print(f"wrote {args.n} synthetic {args.size}x{args.size} images to {out}/images and masks to {out}/masks")
    return 0


def cmd_new_study(args: argparse.Namespace) -> int:
    """Fingerprint the data, plan the study (`optimize.search.plans`), print the plan and write the file."""
    from optimize.folders import studies_dir
    from optimize.search.plans import detect_target, plan_study
    from optimize.workers.pool import visible_gpus

    gpus, source = visible_gpus() if args.device is None else ([], "")
    target = detect_target(args.device, gpus, source)
    studies = studies_dir()
    path = studies / f"{args.study_name}.toml"
    replaced = path.exists()
    if replaced and not args.force:
        raise UsageError(f"{path} already exists; pass --force to overwrite it (it is left unchanged)")
    plan = plan_study(args.study_name, args.data, target, studies, image_size=args.image_size)
    print(plan.table())
    plan.write(path, force=args.force)
    print(f"wrote {path}; run it with: optimize run --study {args.study_name}")
    if args.force and not replaced:
        print(f"(--force: there was no {path.name} to overwrite)")
    trials = trials_in_local_storage(args.study_name) if replaced else 0
    if trials:
        print(
            f"note: the study {args.study_name} already holds {trials} trials run with the file this one replaced; "
            f"if the new file changes its data, training or search, `optimize run --study {args.study_name}` "
            f"refuses to join them: start over under a new name with `--new-study NAME` on that command",
            file=sys.stderr,
        )
    return 0


def trials_in_local_storage(name: str) -> int:
    """How many trials the study `name` holds in its storage when that is a file (the default SQLite file under
    studies/, or a journal file), opened read-only; 0 when there is no such study. A database server is not
    contacted: new-study works without one."""
    import optuna

    from optimize.storage import open_storage, resolve_url, storage_file

    url = resolve_url(name)
    local_file = storage_file(url)
    if local_file is None or not local_file.is_file():
        return 0
    storage = open_storage(url, read_only=True)
    summaries = {summary.study_name: summary for summary in optuna.get_all_study_summaries(storage)}
    return summaries[name].n_trials if name in summaries else 0


def existing_study(args: argparse.Namespace, *, any_objective: bool = False):
    """The study named by `--study` in the resolved storage, opened read-only: these commands never write it."""
    from optimize.search.study import load_existing_study
    from optimize.storage import open_storage

    name = study_name(args)
    url = read_url(name, args.storage)
    return load_existing_study(name, open_storage(url, read_only=True), any_objective=any_objective), url


def read_url(name: str, storage: str | None) -> str:
    """The storage a read-only command opens for study `name`: `resolve_url`'s, except that a confirmation study
    (NAME-confirm) without a file of its own is read from NAME's default file, where `optimize confirm` writes it."""
    from optimize.search.study import CONFIRM_SUFFIX
    from optimize.storage import default_url, resolve_url, storage_file

    url = resolve_url(name, storage)
    source = name.removesuffix(CONFIRM_SUFFIX)
    if source != name and url == default_url(name) and not storage_file(url).exists():
        return default_url(source)
    return url


def study_name(args: argparse.Namespace) -> str:
    """The study name `--study` gives: NAME, or the stem of a path to NAME.toml."""
    name = args.study.removesuffix(".toml").rsplit("/", 1)[-1]
    if not name.strip():
        raise UsageError(
            f"--study {args.study!r} names no study; expected NAME (studies/NAME.toml) or a path to NAME.toml"
        )
    return name


def check_storage_option(args: argparse.Namespace) -> None:
    """Refuse an unusable storage URL or path (`--storage`, `$OPTIMIZE_STORAGE`) before Keras and the data load."""
    from optimize.storage import check_url, resolve_url

    check_url(resolve_url(study_name(args), args.storage))


def new_study_name(text: str) -> str:
    """A study name that `--study NAME` of later commands finds: letters, digits, '.', '_', '-', no path."""
    if not STUDY_NAME.fullmatch(text) or text.endswith(".toml"):
        raise argparse.ArgumentTypeError(
            f"expected a study name of letters, digits, '.', '_' or '-' (not a path or .toml file), got {text!r}"
        )
    return text


def non_empty(text: str) -> str:
    """A path, URL or name as given; an empty one (`--data "$DATA"` with DATA unset) would otherwise read as
    not given and fall back to the default."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a value, got {text!r} (an unset shell variable?)")
    return text


def positive_int(text: str) -> int:
    return bounded_int(text, 1, None, "a positive integer")


def fold_count(text: str) -> int:
    """Cross-validation folds: at least 2 (one fold would validate on every image it trained on)."""
    return bounded_int(text, 2, None, "a number of folds >= 2")


def non_negative_int(text: str) -> int:
    return bounded_int(text, 0, None, "an integer >= 0")


def seed(text: str) -> int:
    """A seed numpy's generators take (each worker adds its rank; `cmd_run` checks the sum)."""
    return bounded_int(text, 0, MAX_SEED, f"a seed in 0..{MAX_SEED}")


def port(text: str) -> int:
    return bounded_int(text, 1, 65535, "a TCP port in 1..65535")


def synthetic_size(text: str) -> int:
    return bounded_int(
        text, MIN_SYNTHETIC_SIZE, MAX_IMAGE_SIZE, f"an image size of {MIN_SYNTHETIC_SIZE}..{MAX_IMAGE_SIZE} px"
    )


def image_size(text: str) -> int:
    """A size to resize images to; above MAX_IMAGE_SIZE a study could not train on them (`IMAGE_SIZE_REASON`)."""
    return bounded_int(text, 1, MAX_IMAGE_SIZE, f"an image size of 1..{MAX_IMAGE_SIZE} px ({IMAGE_SIZE_REASON})")


def bounded_int(text: str, low: int, high: int | None, expected: str) -> int:
    """`text` as an integer in low..high, or argparse's one-line error naming what was expected."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def worker_count(text: str) -> int:
    return bounded_int(text, 1, MAX_WORKERS, f"a number of workers from 1 to {MAX_WORKERS}")


def predict_batch_size(text: str) -> int:
    return bounded_int(text, 1, MAX_PREDICT_BATCH, f"an integer from 1 to {MAX_PREDICT_BATCH}")


def iou_threshold(text: str) -> float:
    """An IoU threshold at which beads match one-to-one: below 0.5 a bead could match two."""
    from data._objects import MIN_IOU_THRESHOLD

    return bounded_float(
        text, lambda value: MIN_IOU_THRESHOLD <= value <= 1, f"an IoU threshold in {MIN_IOU_THRESHOLD}..1"
    )


def probability_threshold(text: str) -> float:
    return bounded_float(text, lambda value: 0 < value < 1, "a probability threshold in (0, 1)")


def positive_seconds(text: str) -> float:
    return bounded_float(text, lambda value: 0 < value < math.inf, "a positive number of seconds")


def bounded_float(text: str, allowed: Callable[[float], bool], expected: str) -> float:
    """`text` as a number that `allowed` accepts, or argparse's one-line error naming what was expected."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not allowed(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def gpu_selection(text: str) -> list[str]:
    """The GPUs `--gpus` names: distinct indices like `0,1`, or `all-visible`; each must be visible to this
    job, checked while parsing so that a typo never falls back to the CPU or starts a worker."""
    from optimize.workers.pool import ALL_VISIBLE, choose_gpus

    requested = None
    if text != ALL_VISIBLE:
        requested = [entry.strip() for entry in text.split(",")]
        if not all(gpu.isascii() and gpu.isdigit() for gpu in requested):
            raise argparse.ArgumentTypeError(f"{text!r} is not a list of GPU indices like 0,1 (or {ALL_VISIBLE})")
        requested = [str(int(gpu)) for gpu in requested]
        for gpu in requested:
            if requested.count(gpu) > 1:
                raise argparse.ArgumentTypeError(
                    f"GPU {gpu} is given twice in {text!r}; --trials-per-gpu N shares a GPU"
                )
    try:
        return choose_gpus(requested)
    except UsageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def quiet_libraries(verbose: bool) -> None:
    """TensorFlow's C++ logs and Optuna's per-trial INFO lines off unless `--verbose`.

    Only `optimize run` loads Keras, in the process that trains (see `cmd_run`); the other commands never do.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose else "3")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
