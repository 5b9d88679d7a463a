"""The search space: what it draws is what Optuna records, a grid enumerates it, and a bad one stops a run at load."""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from optimize.cli import main
from optimize.errors import ConfigError
from optimize.search.config import SamplerConfig, parse_config
from optimize.search.study import make_sampler
from tests.conftest import TINY_STUDY, write_tiny_study
from tests.helpers import refused_run

SPACE = """
[data]
dir = "x"

[search]
loss = ["dice", "focal", "combined"]
depth = { low = 2, high = 5 }
base_filters = { low = 4, high = 16, step = 4 }
learning_rate = { low = 1e-5, high = 1e-2, log = true }
dropout = { low = 0.0, high = 0.3, step = 0.1 }
focal_gamma = { low = 0.5, high = 4.0 }
"""


def config_of(text: str):
    return parse_config(tomllib.loads(text), path=Path("/cfg/space.toml"), text=text)


def test_distributions_are_what_suggest_records_so_added_trials_share_the_space():
    space = config_of(SPACE).search
    assert space.distributions() == {
        "loss": CategoricalDistribution(["dice", "focal", "combined"]),
        "depth": IntDistribution(2, 5),
        "base_filters": IntDistribution(4, 16, step=4),
        "learning_rate": FloatDistribution(1e-5, 1e-2, log=True),
        "dropout": FloatDistribution(0.0, 0.3, step=0.1),
        "focal_gamma": FloatDistribution(0.5, 4.0),
    }
    study = optuna.create_study(direction="maximize", sampler=make_sampler(SamplerConfig(n_startup_trials=2), space))
    known = [
        {"loss": "dice", "depth": 2, "base_filters": 8, "learning_rate": 1e-3, "dropout": 0.1, "focal_gamma": 2.0},
        {"loss": "focal", "depth": 4, "base_filters": 16, "learning_rate": 1e-4, "dropout": 0.0, "focal_gamma": 0.5},
        {"loss": "combined", "depth": 3, "base_filters": 4, "learning_rate": 3e-3, "dropout": 0.2, "focal_gamma": 3.0},
    ]
    for value, params in enumerate(known):
        study.add_trial(create_trial(params=params, distributions=space.distributions(), value=value / 10))
    study.enqueue_trial(known[1])

    for _ in range(3):
        trial = study.ask()
        params = space.suggest(trial)
        study.tell(trial, 0.5)
        assert study.trials[-1].distributions == space.distributions()
        assert all(space.get(name).contains(value) for name, value in params.items())
    assert study.trials[3].params == known[1]
    assert len({tuple(sorted(trial.params.items())) for trial in study.trials}) >= 4


def test_the_grid_sampler_enumerates_every_combination():
    config = config_of("[data]\ndir='x'\n[sampler]\nkind='grid'\n[search]\nloss=['dice', 'focal']\ndepth=[2, 3, 4]\n")
    assert config.search.grid() == {"loss": ["dice", "focal"], "depth": [2, 3, 4]}
    study = optuna.create_study(sampler=make_sampler(config.sampler, config.search))
    study.optimize(lambda trial: len(config.search.suggest(trial)), n_trials=6)
    seen = {(trial.params["loss"], trial.params["depth"]) for trial in study.trials}
    assert seen == set(itertools.product(["dice", "focal"], [2, 3, 4]))


def test_the_run_header_describes_the_space():
    config = config_of(SPACE)
    assert config.search.summary() == (
        "loss ['dice', 'focal', 'combined'], depth [2, 5], base_filters [4, 16], learning_rate [1e-05, 0.01 log], "
        "dropout [0, 0.3], focal_gamma [0.5, 4]"
    )
    assert config.deepest() == (5, "[search] depth up to 5")
    stepped = config_of("[data]\ndir='x'\n[search]\ndepth={low=2, high=7, step=2}\n")
    assert stepped.deepest() == (6, "[search] depth up to 6")


def test_grid_with_a_range_stops_optimize_run_before_any_trial(tmp_path):
    studies = tmp_path / "studies"
    path = write_tiny_study(studies)
    path.write_text(path.read_text().replace("[sampler]\n", '[sampler]\nkind = "grid"\n'))
    assert refused_run(studies) == [
        f'optimize run: error: {path} [search] learning_rate: a range, but [sampler] kind = "grid" needs a list '
        "of choices for every parameter"
    ]


def test_a_study_searching_focal_gamma_runs_end_to_end(studies, capsys):
    text = TINY_STUDY.format(max_epochs=1, max_trials=4, heartbeat=60, grace=120)
    searched = "[search]\nfocal_gamma = { low = 0.5, high = 4.0 }\n"
    (studies / "tiny.toml").write_text(text.replace("[search]\n", searched))

    assert main(["run", "--study", "tiny", "--n-trials", "4"]) == 0

    assert "space focal_gamma [0.5, 4], architecture ['unet', 'attention_unet']" in capsys.readouterr().out
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{studies / 'tiny.db'}")
    assert all(trial.state in (TrialState.COMPLETE, TrialState.PRUNED) for trial in study.trials)
    assert all(trial.user_attrs["epochs_run"] == 1 for trial in study.trials)
    gammas = [trial.params["focal_gamma"] for trial in study.trials]
    assert len(set(gammas)) == 4 and all(0.5 <= gamma <= 4.0 for gamma in gammas)
    assert all(trial.distributions["focal_gamma"] == FloatDistribution(0.5, 4.0) for trial in study.trials)


@pytest.mark.parametrize(
    "entry, expected",
    [
        ("focal_gamma = 9.0", r"\[\[enqueue\]\] #1 focal_gamma = 9.0: expected a number in \[0.5, 4.0\]"),
        ("loss = 'bce'", r"\[\[enqueue\]\] #1 loss = 'bce': expected one of 'dice', 'focal', 'combined'"),
        ("warmup_epochs = 2", r"\[\[enqueue\]\] #1: unknown key 'warmup_epochs'; allowed: base_filters, depth"),
        ("depth = 2.5", r"\[\[enqueue\]\] #1 depth = 2.5: expected an integer in \[2, 5\]$"),
        ("depth = 3.0", r"\[\[enqueue\]\] #1 depth = 3.0: expected an integer in \[2, 5\]$"),
        ("depth = true", r"\[\[enqueue\]\] #1 depth = True: expected an integer in \[2, 5\]$"),
        (
            "base_filters = 6",
            r"\[\[enqueue\]\] #1 base_filters = 6: expected an integer in \[4, 16\] in steps of 4 from 4$",
        ),
        ("dropout = 0.15", r"#1 dropout = 0.15: expected a number in \[0.0, 0.3\] in steps of 0.1 from 0.0$"),
        ("focal_gamma = true", r"#1 focal_gamma = True: expected a number in \[0.5, 4.0\]$"),
        ("focal_gamma = nan", r"#1 focal_gamma = nan: expected a number in \[0.5, 4.0\]$"),
    ],
)
def test_enqueued_points_must_lie_in_the_space(entry, expected):
    with pytest.raises(ConfigError, match=expected):
        config_of(f"{SPACE}\n[[enqueue]]\n{entry}\n")


CHOICES = "[data]\ndir='x'\n[search]\ndropout = [0.0, 0.1]\njit_compile = [true, false]\ndepth = [2, 3]\n"


@pytest.mark.parametrize(
    "entry, expected",
    [
        ("dropout = false", r"\[\[enqueue\]\] #1 dropout = False: expected one of 0.0, 0.1$"),
        ("jit_compile = 1", r"\[\[enqueue\]\] #1 jit_compile = 1: expected one of True, False$"),
        ("depth = 2.0", r"\[\[enqueue\]\] #1 depth = 2.0: expected one of 2, 3$"),
        ("depth = true", r"\[\[enqueue\]\] #1 depth = True: expected one of 2, 3$"),
    ],
)
def test_an_enqueued_value_has_its_parameters_type(entry, expected):
    """`False == 0.0` and `1 == True` in Python: a value of another type must not pass for a choice."""
    with pytest.raises(ConfigError, match=expected):
        config_of(f"{CHOICES}\n[[enqueue]]\n{entry}\n")


def test_enqueued_points_on_the_grid_and_ints_for_floats_are_accepted():
    entries = "dropout = 0.2\nbase_filters = 12\ndepth = 5\nfocal_gamma = 2\nlearning_rate = 1e-3\n"
    assert config_of(f"{SPACE}\n[[enqueue]]\n{entries}").enqueue[0]["dropout"] == 0.2
    assert config_of(f"{CHOICES}\n[[enqueue]]\ndropout = 0\njit_compile = false\n").enqueue[0]["dropout"] == 0


@pytest.mark.parametrize("kind", ["random", "tpe"])
def test_a_seeded_run_that_joins_its_study_draws_new_points(kind, tmp_path):
    """`optimize run --seed 3` twice: the second run re-seeded with seed + rank drew the first run's points again."""
    from optimize.search.study import create_or_join

    config = config_of(f"{SPACE}\n[sampler]\nkind = '{kind}'\nseed = 3\n")
    url = f"sqlite:///{tmp_path / 'space.db'}"
    drawn = []
    for run in range(3):
        study, created = create_or_join(config, url)
        assert created == (run == 0)
        trial = study.ask()
        drawn.append(config.search.suggest(trial))
        study.tell(trial, 0.5)
    assert drawn[0] != drawn[1] != drawn[2] != drawn[0]

    again = tmp_path / "again.db"  # a new study with the same seed draws what the first did: reproducible
    study, _ = create_or_join(config, f"sqlite:///{again}")
    assert config.search.suggest(study.ask()) == drawn[0]


def test_a_run_refuses_to_join_a_study_that_minimizes(tmp_path):
    from optimize.errors import UserError
    from optimize.search.study import create_or_join

    config = config_of(SPACE)
    url = f"sqlite:///{tmp_path / 'space.db'}"
    optuna.create_study(study_name=config.name, storage=url, direction="minimize")
    with pytest.raises(UserError, match=r"has 1 objective\(s\) \(minimize\); optimize reads and runs studies that"):
        create_or_join(config, url)
