"""Inputs no trial can train on and flags that cannot be honoured are refused before any trial, with one
line naming the culprit; worker processes run from a user's folder that holds its own `data/`."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from PIL import Image

from data import write_microbeads
from optimize.cli import main
from optimize.errors import ConfigError, UsageError, UserError
from optimize.limits import MAX_SEED
from optimize.search.config import nearest_image_sizes, parse_config
from optimize.training.dataset import load_study_data
from optimize.workers.pool import choose_gpus, visible_gpus
from tests.conftest import OPTIMIZE, run_cli, write_tiny_study

FAKE_NVIDIA_SMI = """#!/bin/sh
echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-11111111-2222-3333-4444-555555555555)"
echo "  MIG 1g.10gb     Device  0: (UUID: MIG-66666666-7777-8888-9999-000000000000)"
echo "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee)"
"""


def optimize(*args: str, studies: Path, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """The real `optimize` console script; CUDA_VISIBLE_DEVICES only when given here."""
    environment = {key: value for key, value in os.environ.items() if key != "CUDA_VISIBLE_DEVICES"}
    environment.update(OPTIMIZE_STUDIES_DIR=str(studies), **env)
    return subprocess.run(
        [OPTIMIZE, *args], capture_output=True, text=True, timeout=300, env=environment, cwd=cwd or studies
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one error line of a refused command: alone on stderr, or after argparse's usage lines."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, result.stdout
    if len(lines) > 1:
        assert lines[0].startswith("usage: optimize") and all(line.startswith(" ") for line in lines[1:-1]), lines
    return lines[-1]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file of `folder` by name, with a hash of its bytes."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def existing_study(tmp_path_factory) -> Path:
    """A studies folder holding `tiny.toml` and its (empty) study database, which refusals must leave alone."""
    studies = write_tiny_study(tmp_path_factory.mktemp("existing") / "studies").parent
    optuna.create_study(study_name="tiny", storage=f"sqlite:///{studies / 'tiny.db'}", direction="maximize")
    return studies


def image_folder(root: Path, height: int, width: int, *, beads: bool = True, n: int = 6) -> Path:
    """`root/images` and `root/masks` with `n` grey images and masks (one square bead each, or none)."""
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        Image.fromarray((rng.random((height, width)) * 255).astype(np.uint8)).save(root / "images" / f"{i}.png")
        mask = np.zeros((height, width), np.uint8)
        if beads:
            mask[2:5, 2:5] = 255
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    return root


def tiny_config(tmp_path: Path, edit=lambda text: text):
    """The tiny study's config after `edit` of its text, parsed as `tmp_path/edited.toml`."""
    text = edit(write_tiny_study(tmp_path / "cfg").read_text())
    return parse_config(tomllib.loads(text), path=tmp_path / "edited.toml", text=text)


# Data no trial can learn from: image sizes the U-Net cannot pool, masks without a bead.


@pytest.mark.parametrize(
    "size, depth, nearest",
    [(100, 4, (96, 112)), (10, 4, (16,)), (96, 4, (96,)), (10, 2, (8, 12)), (3, 1, (2, 4)), (1, 1, (2,))],
)
def test_nearest_image_sizes(size, depth, nearest):
    assert nearest_image_sizes(size, depth) == nearest


def test_image_size_of_the_config_is_refused_before_the_study_exists(tmp_path):
    studies = write_tiny_study(tmp_path / "studies").parent
    text = (studies / "tiny.toml").read_text().replace("depth = 2", "depth = 4")
    text = text.replace("[data.synthetic]\nn_images = 24\nsize = 32\nseed = 1\n", "")
    (studies / "sized.toml").write_text(text.replace("[data]\n", "[data]\ndir = 'beads'\nimage_size = 100\n"))
    before = snapshot(studies)

    line = error_line(optimize("run", "--study", "sized", studies=studies))

    assert re.fullmatch(
        r"optimize run: error: .*/sized\.toml \[data\] image_size = 100: not divisible by 2\*\*depth = 16 "
        r"\(\[training\] depth = 4\); nearest valid: 96 or 112",
        line,
    ), line
    assert snapshot(studies) == before


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda t: t.replace("size = 32", "size = 10").replace("depth = 2", "depth = 4"),
            r"\[data.synthetic\] size = 10: smaller than 2\*\*depth = 16 \(\[training\] depth = 4\); "
            r"nearest valid: 16$",
        ),
        (
            lambda t: (
                t.replace("size = 32", "size = 36")
                .replace("depth = 2\n", "")
                .replace("[search]\n", "[search]\ndepth = [3, 2]\n")
            ),
            r"size = 36: not divisible by 2\*\*depth = 8 \(\[search\] depth = \[3, 2\]\); nearest valid: 32 or 40$",
        ),
        (
            lambda t: (
                t.replace("size = 32", "size = 20")
                .replace("depth = 2\n", "")
                .replace("[search]\n", "[search]\ndepth = { low = 1, high = 4, step = 2 }\n")
            ),
            r"size = 20: not divisible by 2\*\*depth = 8 \(\[search\] depth up to 3\); nearest valid: 16 or 24$",
        ),
        (
            lambda t: t.replace("[data]\n", "[data]\nimage_size = 0\n"),
            r"\[data\]: image_size = 0 must be >= 1",
        ),
        (lambda t: t.replace("n_images = 24", "n_images = 0"), r"n_images = 0 must be >= 2"),
        (lambda t: t.replace("seed = 1\n", "seed = -1\n", 1), r"\[data\] synthetic: seed = -1 must be in 0\.\."),
        (
            lambda t: t.replace("[sampler]\n", "[sampler]\nseed = 4294967296\n").replace("seed = 0\n", ""),
            rf"\[sampler\]: seed = 4294967296 must be in 0\.\.{MAX_SEED}",
        ),
    ],
)
def test_config_sizes_and_seeds_no_trial_can_use_are_refused_at_load(tmp_path, edit, message):
    with pytest.raises(ConfigError, match=message) as error:
        tiny_config(tmp_path, edit)
    assert str(error.value).startswith(str(tmp_path / "edited.toml"))


@pytest.mark.parametrize(
    "search, size",
    [("depth = [2, 3, 4]", 32), ("depth = { low = 1, high = 4, step = 2 }", 24), ("depth = { low = 2, high = 5 }", 64)],
)
def test_sizes_every_searched_depth_can_pool_are_accepted(tmp_path, search, size):
    config = tiny_config(
        tmp_path,
        lambda t: (
            t.replace("size = 32", f"size = {size}")
            .replace("depth = 2\n", "")
            .replace("[search]\n", f"[search]\n{search}\n")
        ),
    )
    assert config.image_size_problem(size) is None


def test_images_the_unet_cannot_pool_are_refused_before_the_study_opens(existing_study, tmp_path):
    folder = image_folder(tmp_path / "tenpx", 10, 10)
    before = snapshot(existing_study)

    line = error_line(optimize("run", "--study", "tiny", "--data", str(folder), studies=existing_study))

    assert re.fullmatch(
        rf"optimize run: error: data: images in {re.escape(str(folder / 'images'))} are 10x10 px, not divisible by "
        r"2\*\*depth = 4 \(\[training\] depth = 2\); nearest valid: 8 or 12; resize them or set \[data\] image_size "
        r"in .*tiny\.toml",
        line,
    ), line
    assert snapshot(existing_study) == before


def test_non_square_images_name_the_side_that_does_not_pool(tmp_path):
    config = tiny_config(tmp_path)
    with pytest.raises(UserError, match=r"are 40x30 px, height not divisible by 2\*\*depth = 4 .*28 or 32") as error:
        load_study_data(config, image_folder(tmp_path / "rect", 30, 40))
    assert "width" not in str(error.value)


def test_masks_without_a_bead_are_refused_but_data_stats_still_measures_them(existing_study, tmp_path, capsys):
    folder = image_folder(tmp_path / "empty", 32, 32, beads=False)
    before = snapshot(existing_study)

    line = error_line(optimize("run", "--study", "tiny", "--data", str(folder), studies=existing_study))

    assert re.fullmatch(
        rf"optimize run: error: data: every mask in {re.escape(str(folder / 'masks'))} is empty "
        r"\(6 masks without a bead pixel\); a mask marks beads with non-zero pixels",
        line,
    ), line
    assert snapshot(existing_study) == before
    assert main(["data-stats", str(folder)]) == 0
    assert re.search(r"Foreground fraction \| 0\.0 %", capsys.readouterr().out)


def test_masks_that_are_bead_everywhere_are_refused(tmp_path):
    folder = image_folder(tmp_path / "full", 32, 32)
    for mask in (folder / "masks").iterdir():
        Image.fromarray(np.full((32, 32), 2, np.uint8)).save(mask)  # 1 = background, 2 = bead, say

    with pytest.raises(UserError) as error:
        load_study_data(tiny_config(tmp_path), folder)

    assert str(error.value) == (
        f"data: every mask in {folder / 'masks'} is entirely bead (6 masks without a background pixel); "
        "a mask marks beads with non-zero pixels and background with 0"
    )


def test_data_stats_of_a_file_says_it_is_a_file(tmp_path):
    file = tmp_path / "beads.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(file)

    line = error_line(run_cli("data-stats", str(file)))

    assert line == f"optimize data-stats: error: {file} is a file; expected a folder with images/ and masks/"


# Flags: checked while parsing (or before any worker starts), never ignored.


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--study", "tiny", "--timeout", "-1"], r"argument --timeout: .*positive number of seconds, got '-1'"),
        (["run", "--study", "tiny", "--timeout", "nan"], r"argument --timeout: .*got 'nan'"),
        (["run", "--study", "tiny", "--seed", "-1"], rf"argument --seed: expected a seed in 0\.\.{MAX_SEED}, got '-1'"),
        (["run", "--study", "tiny", "--seed", str(MAX_SEED + 1)], rf"argument --seed: .*got '{MAX_SEED + 1}'"),
        (["run", "--study", "tiny", "--n-trials", "0"], r"argument --n-trials: expected a positive integer, got '0'"),
        (["run", "--study", "tiny", "--workers", "two"], r"argument --workers: expected a number of workers from 1"),
        (["run", "--study", "tiny", "--workers", "1" + "0" * 20], r"argument --workers: .* from 1 to 256, got '10+'"),
        (["run", "--study", "tiny", "--trials-per-gpu", "0"], r"argument --trials-per-gpu: .*'0'"),
        (["run", "--study", "tiny", "--gpus", "a,b"], r"argument --gpus: 'a,b' is not a list of GPU indices"),
        (["run", "--study", "tiny", "--gpus", "0,,1"], r"argument --gpus: '0,,1' is not a list of GPU indices"),
        (["run", "--study", "tiny", "--gpus", "1,1"], r"argument --gpus: GPU 1 is given twice in '1,1'"),
        (["dashboard", "--study", "tiny", "--port", "70000"], r"argument --port: expected a TCP port in 1\.\.65535"),
        (["dashboard", "--study", "tiny", "--port", "0"], r"argument --port: .*got '0'"),
        (["make-data", "--out", "x", "--size", "4"], r"argument --size: expected an image size of 8\.\.4096 px"),
        (["make-data", "--out", "x", "--size", "100000"], r"argument --size: expected an image size of 8\.\.4096 px"),
        (["new-study", "n", "--data", "x", "--image-size", "100000"], r"argument --image-size: .* 1\.\.4096 px"),
        (["make-data", "--out", "x", "--n", "-5"], r"argument --n: expected a positive integer, got '-5'"),
        (["make-data", "--out", "x", "--seed", "-3"], r"argument --seed: expected a seed in 0\.\."),
        (["data-stats", "x", "--image-size", "0"], r"argument --image-size: expected an image size of 1\.\.4096 px"),
    ],
)
def test_bad_numbers_are_refused_while_parsing(existing_study, args, message):
    before = snapshot(existing_study)
    result = optimize(*args, studies=existing_study)
    assert result.returncode == 2
    line = error_line(result)
    assert re.match(rf"optimize {args[0]}: error: {message}", line), line
    assert snapshot(existing_study) == before


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi")
@pytest.mark.parametrize("spec, wanted", [("99", "GPU 99 is not visible"), ("all-visible", "all-visible")])
def test_gpus_on_a_machine_without_gpus_are_refused(existing_study, spec, wanted):
    before = snapshot(existing_study)
    result = optimize("run", "--study", "tiny", "--gpus", spec, "--n-trials", "1", studies=existing_study)
    assert result.returncode == 2
    assert error_line(result) == (
        f"optimize run: error: argument --gpus: {wanted}: no GPU is visible "
        "(CUDA_VISIBLE_DEVICES is not set and nvidia-smi is not installed)"
    )
    assert snapshot(existing_study) == before


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi")
def test_a_gpu_worker_whose_backend_sees_no_gpu_stops_instead_of_training_on_the_cpu(existing_study):
    """A PBS job (CUDA_VISIBLE_DEVICES set) with a CPU-only TensorFlow: `--gpus 0` trained on the CPU, exit 0."""
    before = snapshot(existing_study)
    result = optimize(
        "run", "--study", "tiny", "--gpus", "0", "--n-trials", "1", studies=existing_study, CUDA_VISIBLE_DEVICES="0"
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert (
        "[w0] optimize run: error: --gpus: this worker was started for GPU 0, but no GPU visible to the tensorflow "
        "backend, so it would train on the CPU; install a backend with CUDA"
    ) in result.stdout + result.stderr
    assert "trial " not in result.stdout
    assert snapshot(existing_study) == before


@pytest.mark.parametrize("command", [["run", "--study", "tiny"], ["warm-cache", "--study", "tiny", "--list"]])
def test_a_backend_this_project_does_not_train_with_is_one_line(existing_study, tmp_path, command):
    """`KERAS_BACKEND=' jax'` (a stray space) or `bogus` ended in Keras' traceback; `torch` only failed later."""
    before = snapshot(existing_study)
    for backend in (" jax", "torch"):
        result = optimize(*command, studies=existing_study, KERAS_BACKEND=backend)
        assert result.returncode == 2 and error_line(result) == (
            f"optimize {command[0]}: error: KERAS_BACKEND={backend!r}: expected tensorflow or jax, the Keras backends "
            "this project trains with"
        )
    (tmp_path / "keras.json").write_text('{"backend": "numpy"}')
    result = optimize(*command, studies=existing_study, KERAS_HOME=str(tmp_path), KERAS_BACKEND="")
    assert result.returncode == 2 and error_line(result).endswith(
        f"error: {tmp_path / 'keras.json'}: backend: expected tensorflow or jax, the Keras backends this project "
        "trains with"
    )
    assert snapshot(existing_study) == before


@pytest.fixture
def fake_gpus(tmp_path) -> str:
    """A PATH whose `nvidia-smi -L` lists GPUs 0 and 1 (and a MIG device of GPU 0 between them)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (folder / "nvidia-smi").chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


@pytest.mark.parametrize(
    "spec, cuda_visible, message",
    [
        ("0,2", None, r"GPU 2 is not visible; visible: 0, 1 \(nvidia-smi -L\)"),
        ("0", "2,3", r"GPU 0 is not visible; visible: 2, 3 \(CUDA_VISIBLE_DEVICES='2,3'\)"),
        ("all-visible", "", r"all-visible: no GPU is visible \(CUDA_VISIBLE_DEVICES=''\)"),
        ("1", "NoDevFiles", r"GPU 1 is not visible: no GPU is visible \(CUDA_VISIBLE_DEVICES='NoDevFiles'\)"),
        ("0", "GPU-abc,MIG-def", r"GPU 0 is not visible; visible: GPU-abc, MIG-def .*all-visible uses them all"),
    ],
)
def test_gpus_that_are_not_visible_are_named_with_the_visible_ones(
    existing_study, fake_gpus, spec, cuda_visible, message
):
    env = {"PATH": fake_gpus} | ({} if cuda_visible is None else {"CUDA_VISIBLE_DEVICES": cuda_visible})
    before = snapshot(existing_study)
    result = optimize("run", "--study", "tiny", "--gpus", spec, "--n-trials", "1", studies=existing_study, **env)
    assert result.returncode == 2
    line = error_line(result)
    assert re.fullmatch(rf"optimize run: error: argument --gpus: {message}", line), line
    assert snapshot(existing_study) == before


def test_visible_gpus_come_from_cuda_visible_devices_or_nvidia_smi(fake_gpus, monkeypatch):
    monkeypatch.setenv("PATH", fake_gpus)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpus() == (["0", "1"], "nvidia-smi -L")
    assert choose_gpus(None) == ["0", "1"]
    assert choose_gpus(["1"]) == ["1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 1")
    assert choose_gpus(None) == ["3", "1"]
    assert choose_gpus(["1"]) == ["1"]
    with pytest.raises(UsageError, match=r"GPU 0 is not visible; visible: 3, 1"):
        choose_gpus(["0"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-abc,MIG-def,-1,2")
    assert visible_gpus()[0] == ["GPU-abc", "MIG-def"]  # CUDA stops at the first entry that is not a GPU


@pytest.mark.parametrize(
    "args, message",
    [
        (["--trials-per-gpu", "2"], r"--trials-per-gpu 2 needs --gpus; without GPUs use --workers N"),
        (["--workers", "2", "--seed", str(MAX_SEED)], rf"--seed {MAX_SEED}: worker 1 would use seed {MAX_SEED + 1}"),
    ],
)
def test_flags_that_cannot_apply_are_refused_before_workers_start(existing_study, monkeypatch, capsys, args, message):
    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(existing_study))
    before = snapshot(existing_study)
    assert main(["run", "--study", "tiny", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert re.fullmatch(rf"optimize run: error: {message}.*\n", captured.err), captured.err
    assert snapshot(existing_study) == before


def test_a_sampler_seed_in_the_file_that_a_worker_would_overflow_is_refused(existing_study, tmp_path, capsys):
    """`[sampler] seed = 2**32 - 1` with two workers: worker 1 died with a ValueError traceback after worker 0 had
    created the study and run a trial (only `--seed` was checked)."""
    studies = tmp_path / "studies"
    shutil.copytree(existing_study, studies)
    config = studies / "tiny.toml"
    text = config.read_text()
    config.write_text(text.replace("n_startup_trials = 2\nseed = 0", f"n_startup_trials = 2\nseed = {MAX_SEED}"))
    before = snapshot(studies)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(studies))
        assert main(["run", "--study", "tiny", "--workers", "2"]) == 2
        assert capsys.readouterr().err == (
            f"optimize run: error: {config} [sampler] seed = {MAX_SEED}: worker 1 would use seed {MAX_SEED + 1}, above "
            f"{MAX_SEED}; use at most {MAX_SEED - 1}\n"
        )
        assert main(["run", "--study", "tiny", "--rank", "3"]) == 1  # a pool's worker, or a job array's
        assert capsys.readouterr().err == (
            f"optimize run: error: {config} [sampler] seed = {MAX_SEED}: this worker (rank 3) would use seed "
            f"{MAX_SEED + 3}, above {MAX_SEED}; use at most {MAX_SEED - 3}\n"
        )
    assert snapshot(studies) == before


# Worker processes started from a folder that holds the user's own `data/`.


def test_workers_run_from_a_folder_with_its_own_data_folder(tmp_path):
    studies = write_tiny_study(tmp_path / "studies", max_epochs=1, max_trials=2).parent
    user = tmp_path / "user"
    write_microbeads(user / "data", 12, size=32, seed=3)
    (user / "data" / "__init__.py").write_text("raise ImportError('the user folder data/ shadowed the project')\n")

    result = optimize(
        "run", "--study", "tiny", "--workers", "2", "--n-trials", "2", "--data", "data", studies=studies, cwd=user
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output and "shadowed" not in output
    assert {line[:4] for line in result.stdout.splitlines() if line.startswith("[w")} == {"[w0]", "[w1]"}
    assert f"data  {(user / 'data').resolve()}: 9 train / 3 val" in result.stdout
    trials = optuna.load_study(study_name="tiny", storage=f"sqlite:///{studies / 'tiny.db'}").trials
    assert len(trials) == 2 and {trial.state for trial in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
