"""Study configuration files: the shipped ones load, and every kind of mistake names file, key and fix."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from optimize.errors import ConfigError
from optimize.search.config import load_config, parse_config
from optimize.search.settings import TrainSettings

STUDIES = Path(__file__).resolve().parent.parent / "studies"


def parse(text: str, name: str = "bad.toml"):
    return parse_config(tomllib.loads(text), path=Path("/cfg") / name, text=text)


def test_shipped_microbead512_matches_the_users_search():
    config = load_config(str(STUDIES / "microbead512.toml"))
    space = {param.name: param for param in config.search}
    assert config.name == "microbead512"
    assert set(space["architecture"].choices) == {"unet", "resunet", "attention_unet", "attention_resunet"}
    assert (space["learning_rate"].low, space["learning_rate"].high, space["learning_rate"].log) == (1e-5, 5e-4, True)
    assert space["batch_size"].choices == (4, 8, 16, 32)
    assert space["dropout"].choices == (0.0, 0.1, 0.2, 0.3)
    assert len(space["loss"].choices) == 6
    assert (config.training.max_epochs, config.training.patience, config.data.val_fraction) == (100, 30, 0.15)
    assert config.pruner.kind == "asha" and config.pruner.min_resource == 10
    assert config.enqueue[0] == {
        "architecture": "unet",
        "learning_rate": 2e-4,
        "batch_size": 4,
        "dropout": 0.3,
        "loss": "combined",
    }
    assert [entry["loss"] for entry in config.enqueue] == ["combined", "focal_tversky", "dice"]
    assert config.data_dir() == (STUDIES.parent / "dataset_shrunk_masks").resolve()


def test_shipped_demo_is_small():
    config = load_config(str(STUDIES / "demo.toml"))
    assert config.data.synthetic.size == 128
    assert config.training.base_filters <= 16 and config.training.max_epochs <= 12
    assert config.budget.max_trials is not None


def test_defaults_come_from_the_dataclasses():
    config = parse("[data]\ndir = 'x'\n")
    assert config.training == TrainSettings()
    assert config.sampler.kind == "tpe" and config.pruner.kind == "asha"
    assert config.search == () and config.enqueue == ()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[data]\ndir='x'\n[trainig]\nmax_epochs=3", r"bad.toml: unknown key 'trainig'; allowed: .*training"),
        ("[data]\ndir='x'\n[training]\nmax_epoch=3", r"\[training\]: unknown key 'max_epoch'; allowed: .*max_epochs"),
        ("[data]\ndir='x'\n[training]\nmax_epochs='ten'", r"\[training\] max_epochs = 'ten': expected int"),
        ("[data]\ndir='x'\n[training]\nmax_epochs=true", r"max_epochs = True: expected int"),
        ("[data]\ndir='x'\n[training]\ndropout=1.5", r"\[training\]: dropout = 1.5 must be in \[0, 1\)"),
        ("[data]\ndir='x'\n[search]\nloss=['dice','hinge']", r"\[search\] loss: loss = 'hinge' is not one of dice"),
        ("[data]\ndir='x'\n[search]\narchitecture=['vnet']", r"architecture = 'vnet' is not one of unet"),
        ("[data]\ndir='x'\n[search]\nlearning_rate={low=1e-2, high=1e-4}", r"low = 0.01 must be below high"),
        ("[data]\ndir='x'\n[search]\nlearning_rate={low=0, high=1e-4, log=true}", r"log range needs low > 0"),
        ("[data]\ndir='x'\n[search]\nwarp=[1]", r"\[search\] warp: unknown parameter; searchable: architecture"),
        ("[data]\ndir='x'\n[search]\nloss={low=1, high=2}", r"a range needs a numeric parameter"),
        ("[data]\ndir='x'\n[training]\nloss='dice'\n[search]\nloss=['dice']", r"'loss' is set in both"),
        ("[data]\ndir='x'\n[sampler]\nkind='cmaes'", r"\[sampler\]: kind = 'cmaes' is not one of tpe, random, grid"),
        ("[data]\ndir='x'\n[pruner]\nkind='asha'\nreduction_factor=1", r"\[pruner\]: need .*reduction_factor >= 2"),
        ("[training]\nmax_epochs=3", r"\[data\]: set exactly one of `dir`"),
        ("[data]\ndir='x'\nval_fraction=1.5", r"val_fraction = 1.5 must be in \(0, 1\)"),
        (
            "[data]\ndir='x'\n[search]\nbatch_size=[4, 6]\ngradient_accumulation_steps=[1, 4]",
            r"batch_size = 6 is not divisible by gradient_accumulation_steps = 4",
        ),
        (
            "[data]\ndir='x'\n[search]\nloss=['dice']\n[[enqueue]]\nloss='focal'",
            r"\[\[enqueue\]\] #1 loss = 'focal': expected one of 'dice'",
        ),
        (
            "[data]\ndir='x'\n[search]\nloss=['dice']\n[[enqueue]]\ndropout=0.1",
            r"\[\[enqueue\]\] #1: unknown key 'dropout'; allowed: loss",
        ),
        (
            "[data]\ndir='x'\n[search]\nlearning_rate={low=1e-4, high=1e-3}\n[[enqueue]]\nlearning_rate=1.0",
            r"learning_rate = 1.0: expected a number in \[0.0001, 0.001\]",
        ),
    ],
)
def test_config_errors_name_file_key_and_expectation(text, expected):
    with pytest.raises(ConfigError, match=expected) as error:
        parse(text)
    message = str(error.value)
    assert "\n" not in message and message.startswith("/cfg/bad.toml")


def test_missing_config_lists_known_studies(tmp_path, monkeypatch):
    (tmp_path / "alpha.toml").write_text("[data]\ndir='x'\n")
    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"no study config .*beta.toml; studies in .*: alpha"):
        load_config("beta")


def test_invalid_toml_names_the_file(tmp_path, monkeypatch):
    (tmp_path / "broken.toml").write_text("[data\n")
    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"broken.toml: not valid TOML"):
        load_config("broken")


def test_integer_ranges_and_ints_for_floats():
    config = parse("[data]\ndir='x'\n[search]\nbase_filters={low=8, high=32, step=8}\nlearning_rate=[1, 0.5]\n")
    space = {param.name: param for param in config.search}
    assert isinstance(space["base_filters"].low, int) and space["base_filters"].step == 8
    assert space["learning_rate"].choices == (1.0, 0.5)
