"""Study configuration files: the shipped ones load, and every kind of mistake names file, key and fix."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import optuna
import pytest

from optimize.errors import ConfigError
from optimize.limits import MAX_SEED
from optimize.search.config import PrunerConfig, RecoveryConfig, load_config, parse_config
from optimize.search.settings import TrainSettings
from tests.conftest import run_cli, write_tiny_study
from tests.helpers import refused_run

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
    assert (config.pruner.kind, config.pruner.min_resource, config.pruner.reduction_factor) == ("asha", 25, 2)
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
    assert config.search.params == () and config.enqueue == ()


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
            r"\[search\] batch_size \[4, 6\] with \[search\] gradient_accumulation_steps \[1, 4\]: a trial can get "
            r"batch_size = 6 with gradient_accumulation_steps = 4, and the batch must divide into that many micro",
        ),
        (  # a range against the [training] value: the trials drawing 5, 6, 7, 9, ... failed before training
            "[data]\ndir='x'\n[training]\ngradient_accumulation_steps=4\n[search]\nbatch_size={low=4, high=12}",
            r"\[search\] batch_size \[4, 12\]: a trial can get batch_size = 5 with gradient_accumulation_steps = 4",
        ),
        (
            "[data]\ndir='x'\n[training]\nbatch_size=8\n[search]\ngradient_accumulation_steps={low=1, high=8}",
            r"\[search\] gradient_accumulation_steps \[1, 8\]: a trial can get batch_size = 8 with "
            r"gradient_accumulation_steps = 3",
        ),
        (  # the rungs' epochs took 2**10**15: memory ran out after the study was created
            "[data]\ndir='x'\n[pruner]\nmin_early_stopping_rate=1000000000000000",
            r"\[pruner\]: min_early_stopping_rate = 1000000000000000 must be <= 64: ASHA's first rung",
        ),
        (  # the heartbeat thread died of an OverflowError and the run went on without one
            "[data]\ndir='x'\n[recovery]\nheartbeat_interval=100000000000000000000",
            r"\[recovery\]: heartbeat_interval = 100000000000000000000 must be <= 604800 \(seconds: a week\)",
        ),
        ("[data]\ndir='x'\n[recovery]\nreconnect_timeout=604801", r"reconnect_timeout = 604801 must be <= 604800"),
        (  # a 50-line TensorFlow out-of-memory traceback when the first model was built
            "[data]\ndir='x'\n[training]\nbase_filters=100000000",
            r"\[training\]: base_filters = 100000000 must be <= 1024: a U-Net's deepest level has",
        ),
        ("[data]\ndir='x'\n[search]\nbase_filters=[16, 2048]", r"\[search\] base_filters: base_filters = 2048 must"),
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
        (
            "[data]\ndir='x'\n[search]\nlearning_rate={low=1e-4, high=1e-2, log=true, step=1e-3}",
            r"\[search\] learning_rate: a log range takes no step",
        ),
        (
            "[data]\ndir='x'\n[sampler]\nkind='grid'\n[search]\nloss=['dice']\nlearning_rate={low=1e-4, high=1e-2}",
            r'\[search\] learning_rate: a range, but \[sampler\] kind = "grid" needs a list of choices',
        ),
        (
            "[data]\ndir='x'\n[training]\nloss='dice'\ntversky_beta=0.4",
            r"\[training\] tversky_beta: no loss of this study takes it \(loss: dice\); "
            r"it sets a parameter of tversky, focal_tversky, combined_tversky$",
        ),
        (
            "[data]\ndir='x'\n[training]\ntversky_alpha=0.5",
            r"\[training\] tversky_alpha: no loss of this study takes it \(loss: combined\)",
        ),
        (
            "[data]\ndir='x'\n[search]\nloss=['dice', 'bce']\nfocal_gamma={low=0.5, high=4.0}",
            r"\[search\] focal_gamma: no loss of this study takes it \(loss: dice, bce\)",
        ),
        ("[data]\ndir='x'\n[training]\nfocal_alpha=1.5", r"\[training\]: focal_alpha = 1.5 must be in \[0, 1\]"),
        ("[data]\ndir='x'\n[search]\nfocal_gamma=[2, -1]", r"\[search\] focal_gamma: focal_gamma = -1.0 must be >= 0"),
        (
            "[data]\ndir='x'\n[training]\nxla_autotune_level=5",
            r"\[training\]: xla_autotune_level = 5 must be 0 to 4 \(0: no autotuning, 4: XLA's default\)",
        ),
        (
            "[data]\ndir='x'\n[search]\nxla_autotune_level=[0, 4]",
            r"\[search\] xla_autotune_level: set once per worker process, so it cannot be searched; "
            r"set it in \[training\]",
        ),
        ("[data]\ndir='x'\n[recovery]\nstop_after_repeated_errors=0", r"stop_after_repeated_errors = 0 must be >= 1"),
        ("[data]\ndir='x'\n[faults]\nmax_retry=-1", r"\[faults\]: need heartbeat_interval >= 1 and max_retry >= 0"),
        (
            "[data]\ndir='x'\n[faults]\nmax_retry=1\n[recovery]\nmax_retry=1",
            r"bad.toml: both \[recovery\] and \[faults\] are set; \[faults\] is the old name of \[recovery\]",
        ),
        # A section of the wrong kind.
        (
            "enqueue = 5\n[data]\ndir='x'",
            r"bad.toml: enqueue = 5: expected \[\[enqueue\]\] entries \(an array of tables\)$",
        ),
        ("training = 5\n[data]\ndir='x'", r"bad.toml: training = 5: expected a \[training\] table$"),
        ("search = 5\n[data]\ndir='x'", r"bad.toml: search = 5: expected a \[search\] table$"),
        ("data = 'x'", r"bad.toml: data = 'x': expected a \[data\] table$"),
        (
            "[data]\ndir='x'\n[enqueue]\nloss='dice'",
            r"bad.toml: \[enqueue\] is a single table; write each entry as \[\[enqueue\]\]$",
        ),
        # [recovery] and [pruner] numbers.
        (
            "[data]\ndir='x'\n[recovery]\ngrace_period=-5",
            r"\[recovery\]: grace_period = -5 must be > heartbeat_interval = 60 \(seconds\)",
        ),
        ("[data]\ndir='x'\n[recovery]\nheartbeat_interval=10\ngrace_period=10", r"grace_period = 10 must be > heartb"),
        ("[data]\ndir='x'\n[recovery]\nreconnect_timeout=0", r"\[recovery\]: reconnect_timeout = 0 must be >= 1"),
        (
            "[data]\ndir='x'\n[pruner]\nkind='median'\nn_startup_trials=-2",
            r"\[pruner\]: n_startup_trials = -2 must be >= 0",
        ),
        (
            "[data]\ndir='x'\n[pruner]\nkind='median'\nn_warmup_steps=-1",
            r"\[pruner\]: n_warmup_steps = -1 must be >= 0",
        ),
        (
            "[data]\ndir='x'\n[pruner]\nkind='hyperband'\nmax_resource=-5",
            r"\[pruner\]: max_resource = -5 must be >= min_resource = 5 \(epochs; unset, it is max_epochs\)$",
        ),
        (
            "[data]\ndir='x'\n[pruner]\nkind='hyperband'\nmax_resource=0",
            r"max_resource = 0 must be >= min_resource = 5",
        ),
        # Sizes no machine can hold.
        (
            "[data]\ndir='x'\nimage_size=100000",
            r"\[data\]: image_size = 100000 must be <= 4096: one 512x512 image already takes ~1 GiB of GPU memory "
            r"in training at base_filters 64; tile larger images into pieces of at most 4096 px$",
        ),
        ("[data.synthetic]\nsize=100000", r"\[data\] synthetic: size = 100000 must be <= 4096: one 512x512 image"),
        (
            "[data.synthetic]\nn_images=100000\nsize=128",
            r"\[data\] synthetic: n_images = 100000 images of 128x128 px hold 1\.64e\+09 pixels, more than the "
            r"1\.07e\+09 \(4 GiB as float32\) synthetic data may hold; at most 65536 images of this size$",
        ),
        # NaN and infinity: TOML has them, no setting takes them.
        (
            "[data]\ndir='x'\n[training]\nlearning_rate=nan",
            r"\[training\] learning_rate = nan: expected a finite number$",
        ),
        (
            "[data]\ndir='x'\n[training]\nlearning_rate=inf",
            r"\[training\] learning_rate = inf: expected a finite number",
        ),
        ("[data]\ndir='x'\n[training]\nclipnorm=nan", r"\[training\] clipnorm = nan: expected a finite number"),
        ("[data]\ndir='x'\n[training]\nfocal_gamma=-inf", r"\[training\] focal_gamma = -inf: expected a finite"),
        ("[data]\ndir='x'\nval_fraction=nan", r"\[data\] val_fraction = nan: expected a finite number"),
        (
            "[data]\ndir='x'\n[search]\nlearning_rate={low=1e-4, high=inf, log=true}",
            r"\[search\] learning_rate high = inf: expected a finite number",
        ),
        ("[data]\ndir='x'\n[search]\nlearning_rate=[nan, 1e-3]", r"\[search\] learning_rate = nan: expected a finite"),
        ("[data]\ndir='x'\n[search]\ndropout={low=0.0, high=0.3, step=nan}", r"dropout step = nan: expected a finite"),
        # Seeds numpy refuses.
        ("[data]\ndir='x'\n[training]\nseed=-1", rf"\[training\]: seed = -1 must be in 0\.\.{MAX_SEED}$"),
        ("[data]\ndir='x'\n[training]\nseed=1099511627776", r"\[training\]: seed = 1099511627776 must be in 0\.\."),
        ("[data]\ndir='x'\n[search]\nseed=[0, -1]", r"\[search\] seed: seed = -1 must be in 0\.\."),
    ],
)
def test_config_errors_name_file_key_and_expectation(text, expected):
    with pytest.raises(ConfigError, match=expected) as error:
        parse(text)
    message = str(error.value)
    assert "\n" not in message and message.startswith("/cfg/bad.toml")


UNUSED = "[data]\ndir='x'\n"
GRID = "[data]\ndir='x'\n[search]\nloss=['dice', 'focal']\n[sampler]\nkind='grid'\n"


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            UNUSED + "[search]\narchitecture=['unet', 'unet', 'resunet']",
            r"\[search\] architecture: 'unet' is listed twice; list each choice once "
            r"\(a repeated choice is drawn more often\)$",
        ),
        (
            UNUSED + "[search]\ndropout={low=0.0, high=0.25, step=0.1}",
            r"\[search\] dropout: step = 0.1 does not divide high - low = 0.25 \(the range would stop at 0.2\); "
            r"nearest valid high: 0.2 or 0.3$",
        ),
        (
            UNUSED + "[search]\nbase_filters={low=4, high=6, step=4}",
            r"\[search\] base_filters: step = 4 does not divide high - low = 2 \(the range would stop at 4\); "
            r"nearest valid high: 8$",
        ),
        (
            UNUSED + "[search]\ndropout={low=0.5, high=0.95, step=0.1}",
            r"dropout: step = 0.1 does not divide high - low = 0.45 \(the range would stop at 0.9\); "
            r"nearest valid high: 0.9$",
        ),
        (
            "[data]\nimage_size=64\n[data.synthetic]\nsize=32",
            r"\[data\] image_size = 64: only images read from a `dir` are resized; \[data.synthetic\] size sets "
            r"the synthetic images' size \(32\): remove image_size$",
        ),
        (
            UNUSED + "[sampler]\nkind='random'\nn_startup_trials=4",
            r'\[sampler\] n_startup_trials: only kind = "tpe" uses it, and this file sets kind = "random"; '
            r'remove it or set kind = "tpe"$',
        ),
        (UNUSED + "[sampler]\nkind='random'\nmultivariate=false", r'\[sampler\] multivariate: only kind = "tpe" uses'),
        (GRID + "constant_liar=true", r'\[sampler\] constant_liar: only kind = "tpe" uses it, and this file sets kind'),
        (
            UNUSED + "[pruner]\nkind='median'\nmin_resource=3",
            r'\[pruner\] min_resource: kind = "median" does not use it \(asha, hyperband do\); '
            r"remove it or change kind$",
        ),
        (UNUSED + "[pruner]\nkind='median'\nreduction_factor=3", r'reduction_factor: kind = "median" does not use it'),
        (
            UNUSED + "[pruner]\nmax_resource=50",
            r'\[pruner\] max_resource: kind = "asha" does not use it \(hyperband does\)',
        ),
        (UNUSED + "[pruner]\nkind='asha'\nn_warmup_steps=3", r'n_warmup_steps: kind = "asha" does not use it \(median'),
        (UNUSED + "[pruner]\nkind='hyperband'\nmin_early_stopping_rate=1", r'kind = "hyperband" does not use it'),
        (
            UNUSED + "[training]\nplateau_factor=0.3",
            r'\[training\] plateau_factor: only schedule = "plateau" uses it, and this study\'s schedule is none; '
            r'remove it or set schedule = "plateau"$',
        ),
        (
            UNUSED + "[training]\nschedule='cosine'\nplateau_patience=2",
            r"plateau_patience: only schedule = \"plateau\"",
        ),
        (UNUSED + "[search]\nplateau_factor=[0.3, 0.5]", r"\[search\] plateau_factor: only schedule = \"plateau\""),
        (
            UNUSED + "[training]\nwarmup_epochs=2\n[search]\nschedule=['none', 'plateau']",
            r'\[training\] warmup_epochs: only schedule = "cosine" uses it, and this study\'s schedule is none or '
            r"plateau",
        ),
        (
            UNUSED + "[training]\nrun_eagerly=true\njit_compile=true",
            r"\[training\] jit_compile = true: run_eagerly = true runs each step eagerly, without XLA, so jit_compile "
            r"does nothing; remove one of them$",
        ),
        (
            UNUSED + "[training]\nrun_eagerly=true\n[search]\njit_compile=[true, false]",
            r"\[search\] jit_compile: run_e",
        ),
        (  # the rate only ever rose: at most 3/50 of the learning rate, and no cosine phase
            UNUSED + "[training]\nschedule='cosine'\nwarmup_epochs=50\nmax_epochs=3",
            r"\[training\] warmup_epochs = 50 is not below max_epochs = 3: the learning rate would rise for the whole "
            r"trial and its cosine decay never start",
        ),
        (
            UNUSED + "[training]\nschedule='cosine'\nwarmup_epochs=20\n[search]\nmax_epochs=[10, 20]",
            r"warmup_epochs = 20 is not below max_epochs = 20",
        ),
    ],
)
def test_a_new_run_refuses_settings_that_would_do_nothing(tmp_path, text, expected):
    """Checked when a user's file is read for a run: a study made before these checks keeps its stored config
    readable (reports, confirm, export read it with `parse_config`)."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    parse(text)
    with pytest.raises(ConfigError, match=expected) as error:
        load_config(str(path))
    message = str(error.value)
    assert "\n" not in message and message.startswith(str(path))


@pytest.mark.parametrize(
    "text",
    [
        UNUSED + "[training]\nschedule='plateau'\nplateau_factor=0.3\nplateau_patience=2",
        UNUSED + "[training]\nplateau_factor=0.3\nwarmup_epochs=2\n[search]\nschedule=['plateau', 'cosine']",
        UNUSED + "[pruner]\nkind='none'\nmin_resource=1\nreduction_factor=2",
        UNUSED + "[pruner]\nkind='hyperband'\nmin_resource=1\nmax_resource=9",
        UNUSED + "[pruner]\nkind='median'\nn_startup_trials=0\nn_warmup_steps=0",
        UNUSED + "[sampler]\nkind='tpe'\nn_startup_trials=3\nmultivariate=false\nconstant_liar=false",
        UNUSED + "[sampler]\nkind='random'\nseed=3",
        UNUSED + "[training]\nrun_eagerly=true\njit_compile=false",
        UNUSED + "[training]\naugment=false\naugment_on='host'",
        UNUSED
        + "[search]\narchitecture=['unet']\ndropout={low=0.0, high=0.3, step=0.1}\ndepth={low=2, high=4, step=2}",
        "[data]\nimage_size=64\ndir='x'",
    ],
)
def test_settings_that_are_used_load(tmp_path, text):
    path = tmp_path / "good.toml"
    path.write_text(text)
    load_config(str(path))


def test_the_tests_tiny_study_loads(tmp_path):
    load_config(str(write_tiny_study(tmp_path)))


def test_a_study_file_that_is_not_utf8_names_the_file(tmp_path, monkeypatch):
    (tmp_path / "latin.toml").write_bytes("description = 'stüdy'\n".encode("latin-1"))
    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"latin.toml: not UTF-8 text \(byte 0xfc at offset 17\); save it as UTF-8$"):
        load_config("latin")


def test_a_folder_is_not_a_study_file_and_not_listed(tmp_path, monkeypatch):
    (tmp_path / "alpha.toml").write_text("[data]\ndir='x'\n")
    (tmp_path / "adir.toml").mkdir()
    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"adir.toml is a folder, not a study file; studies in .*: alpha$"):
        load_config("adir")
    with pytest.raises(ConfigError, match=r"no study config .*beta.toml; studies in .*: alpha$"):
        load_config("beta")


def test_a_bad_value_stops_optimize_run_before_the_database_exists(tmp_path):
    studies = tmp_path / "studies"
    path = write_tiny_study(studies, grace=-5)
    assert refused_run(studies) == [
        f"optimize run: error: {path} [recovery]: grace_period = -5 must be > heartbeat_interval = 60 (seconds): "
        "a live worker beats every heartbeat_interval, so a shorter grace period would fail its running trials"
    ]


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


def test_loss_parameters_are_training_settings_that_reach_the_chosen_loss(tmp_path):
    path = tmp_path / "tversky.toml"
    path.write_text(
        "[data]\ndir = 'x'\n[training]\nloss = 'combined_tversky'\nfocal_gamma = 3\ntversky_beta = 0.4\n"
        "combined_tversky_focal_weight = 0.25\n"
    )
    settings = load_config(str(path)).training
    assert (settings.focal_gamma, settings.tversky_beta, settings.combined_tversky_focal_weight) == (3.0, 0.4, 0.25)
    assert settings.loss_params() == {
        "focal_alpha": 0.25,
        "focal_gamma": 3.0,
        "tversky_alpha": 0.7,
        "tversky_beta": 0.4,
        "weights": (0.75, 0.25),
    }
    assert settings.replace(loss="dice").loss_params() == {}
    assert settings.replace(loss="focal_tversky").loss_params() == {"alpha": 0.7, "beta": 0.4}


def test_a_loss_setting_is_allowed_when_one_searched_loss_takes_it():
    config = parse("[data]\ndir='x'\n[training]\nfocal_gamma=1.0\n[search]\nloss=['dice', 'focal']\n")
    assert config.training.focal_gamma == 1.0


def test_the_old_section_name_faults_is_read_with_a_warning(tmp_path, caplog):
    path = tmp_path / "old.toml"
    path.write_text("[data]\ndir = 'x'\n[faults]\nheartbeat_interval = 7\nmax_retry = 4\n")
    with caplog.at_level(logging.WARNING):
        config = load_config(str(path))
    assert config.recovery == RecoveryConfig(heartbeat_interval=7, max_retry=4)
    assert [record.getMessage() for record in caplog.records] == [
        f"{path}: [faults] is now called [recovery]; rename the section (the old name will stop working)"
    ]
    caplog.clear()
    path.write_text("[data]\ndir = 'x'\n[recovery]\nheartbeat_interval = 7\n")
    assert load_config(str(path)).recovery.heartbeat_interval == 7
    assert not caplog.records


def test_optimize_run_shows_the_warning_for_the_old_section_name(tmp_path):
    studies = tmp_path / "studies"
    write_tiny_study(studies)
    path = studies / "tiny.toml"
    synthetic = "[data.synthetic]\nn_images = 24\nsize = 32\nseed = 1\n"
    path.write_text(path.read_text().replace("[recovery]", "[faults]").replace(synthetic, "dir = 'no_beads'\n"))

    result = run_cli("run", "--study", "tiny", env={"OPTIMIZE_STUDIES_DIR": str(studies)})

    assert result.returncode != 0 and "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "[faults]" in line]
    assert warnings == [
        f"WARNING optimize.search.config: {path}: [faults] is now called [recovery]; "
        "rename the section (the old name will stop working)"
    ], result.stderr


def test_a_step_runs_op_by_op_only_under_jax_without_xla_and_not_asked_for():
    base = "[data.synthetic]\nn_images = 24\n[search]\narchitecture = ['unet']\n"
    assert parse(base).runs_op_by_op("jax")
    assert not parse(base).runs_op_by_op("tensorflow")
    assert not parse("[training]\njit_compile = true\n" + base).runs_op_by_op("jax")
    assert not parse("[training]\nrun_eagerly = true\n" + base).runs_op_by_op("jax"), "eager on purpose"
    assert not parse(base + "jit_compile = [true, false]\n").runs_op_by_op("jax"), "searched"


@pytest.mark.parametrize(
    "min_resource, reduction_factor, min_early_stopping_rate, max_epochs",
    [(5, 2, 0, 40), (25, 2, 0, 100), (3, 2, 0, 12), (10, 3, 0, 100), (2, 3, 1, 60), (7, 2, 0, 6)],
)
def test_asha_rungs_are_where_optunas_pruner_records_them(
    min_resource, reduction_factor, min_early_stopping_rate, max_epochs
):
    pruner = PrunerConfig(
        min_resource=min_resource, reduction_factor=reduction_factor, min_early_stopping_rate=min_early_stopping_rate
    )
    optuna_pruner = optuna.pruners.SuccessiveHalvingPruner(
        min_resource=min_resource, reduction_factor=reduction_factor, min_early_stopping_rate=min_early_stopping_rate
    )
    study = optuna.create_study(direction="maximize", pruner=optuna_pruner)
    trial = study.ask()
    recorded = []
    for epoch in range(1, max_epochs + 1):
        trial.report(0.5, epoch)
        assert not trial.should_prune()
        rung_keys = [key for key in study.trials[0].system_attrs if key.startswith("completed_rung_")]
        if len(rung_keys) > len(recorded):
            recorded.append(epoch)
    assert pruner.asha_rungs(max_epochs) == recorded
    assert PrunerConfig(kind="median").asha_rungs(max_epochs) == []


def test_an_asha_pruner_without_a_rung_before_the_last_epoch_is_said_to_prune_nothing():
    """A trial is never pruned at its last epoch, so min_resource >= max_epochs switches pruning off unasked."""
    assert PrunerConfig(min_resource=5).never_prunes_note(40) is None
    assert PrunerConfig(min_resource=3).never_prunes_note(6) is None  # rung 3 before epoch 6
    assert PrunerConfig(kind="median").never_prunes_note(1) is None
    assert PrunerConfig(min_resource=3).never_prunes_note(3) == (
        "note: [pruner] ASHA's first rung, epoch 3, is not before the last epoch (3): no trial is pruned; lower "
        "min_resource to prune"
    )
    assert "first rung, epoch 8," in PrunerConfig(min_resource=2, min_early_stopping_rate=2).never_prunes_note(6)


def test_batch_sizes_above_the_training_images_are_said_to_be_one_setting():
    """A batch larger than the training set is all of it: batch sizes 32 and 64 on 18 images train alike."""
    synthetic = "[data.synthetic]\n"
    searched = parse(synthetic + "[search]\nbatch_size = [8, 32, 64]\n")
    assert searched.oversized_batches_note(64) is None
    assert searched.oversized_batches_note(18) == (
        "note: [search] batch_size [8, 32, 64] exceeds the 18 training images at 32, 64: a trial drawing such a "
        "size trains on one batch of all 18 per step, whatever the size"
    )
    fixed = parse(synthetic + "[training]\nbatch_size = 16\n")
    assert fixed.oversized_batches_note(16) is None
    assert fixed.oversized_batches_note(10) == (
        "note: [training] batch_size 16 exceeds the 10 training images: each step trains on one batch of all 10"
    )
    ranged = parse(synthetic + "[search]\nbatch_size = { low = 4, high = 40, step = 4 }\n")
    assert ranged.oversized_batches_note(40) is None
    assert "batch_size [4, 40] exceeds the 36 training images at 40:" in ranged.oversized_batches_note(36)
    assert "batch_size [4, 40] exceeds the 35 training images at 36 to 40:" in ranged.oversized_batches_note(35)
