"""A study's search space (`[search]`): the one place that reads it, checks it and hands it to Optuna.

Each parameter names a `TrainSettings` field: a list is a choice among values, a `{low, high, log, step}`
table a numeric range. A trial's values come from `SearchSpace.suggest`; `distributions` are the Optuna
distributions those very calls record, so that trials made outside the sampler (`study.add_trial`,
`study.enqueue_trial`) sit in the same space; `grid` is what the grid sampler enumerates.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from optimize.errors import ConfigError
from optimize.search.settings import PROCESS_SETTINGS, TrainSettings, field_names, field_types
from optimize.search.tables import reject_unknown, typed

if TYPE_CHECKING:
    import optuna

RANGE_KEYS = {"low", "high", "log", "step"}
STEP_TOLERANCE = 1e-8
"""How far from a whole number of steps a float may lie and still be on its range's grid (as in Optuna)."""


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter: categorical `choices`, or a `low`..`high` range (optionally log-scaled)."""

    name: str
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @property
    def is_categorical(self) -> bool:
        return bool(self.choices)

    @property
    def is_integer(self) -> bool:
        return isinstance(self.low, int)

    @property
    def kind(self) -> type:
        """The type of the parameter's values: bool, int, float or str."""
        return type(self.choices[0]) if self.is_categorical else type(self.low)

    def contains(self, value: Any) -> bool:
        """Whether `value` is a point of this space (used to validate enqueued trials): of the parameter's type
        (in Python `False == 0.0` and `1 == True`, so equality alone would let a bool pass for a number), among
        the choices or in the range and on its step grid."""
        if not _of_kind(value, self.kind):
            return False
        if self.is_categorical:
            return value in self.choices
        return self.low <= value <= self.high and self.on_step(value)

    def on_step(self, value: int | float) -> bool:
        """Whether `value` is `low` plus a whole number of steps, within Optuna's tolerance for float steps."""
        if self.step is None:
            return True
        steps = (value - self.low) / self.step
        return abs(steps - round(steps)) < STEP_TOLERANCE

    def expected(self) -> str:
        """What a value must be, for error messages."""
        if self.is_categorical:
            return "one of " + ", ".join(map(repr, self.choices))
        steps = f" in steps of {self.step} from {self.low}" if self.step is not None else ""
        return f"{'an integer' if self.is_integer else 'a number'} in [{self.low}, {self.high}]{steps}"

    def summary(self) -> str:
        """The parameter as the run header shows it: `loss ['dice', 'focal']`, `learning_rate [1e-05, 0.01 log]`."""
        if self.is_categorical:
            return f"{self.name} {list(self.choices)}"
        return f"{self.name} [{self.low:g}, {self.high:g}{' log' if self.log else ''}]"

    def highest(self) -> Any:
        """The largest value a trial can get (an integer range stops at its last step)."""
        if self.is_categorical:
            return max(self.choices)
        if self.is_integer:
            step = int(self.step or 1)
            return self.low + (self.high - self.low) // step * step
        return self.high

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution that `suggest` records for this parameter."""
        if self.is_categorical:
            return CategoricalDistribution(list(self.choices))
        if self.is_integer:
            return IntDistribution(self.low, self.high, log=self.log, step=int(self.step or 1))
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def suggest(self, trial: optuna.Trial) -> Any:
        """This parameter's value for `trial`, drawn by the study's sampler."""
        if self.is_categorical:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.is_integer:
            return trial.suggest_int(self.name, self.low, self.high, step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True)
class SearchSpace:
    """The searched parameters, in the order the study file lists them."""

    params: tuple[ParamSpec, ...] = ()

    def __iter__(self) -> Iterator[ParamSpec]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def names(self) -> tuple[str, ...]:
        return tuple(param.name for param in self.params)

    def get(self, name: str) -> ParamSpec | None:
        """The parameter `name`, or None when it is not searched."""
        return next((param for param in self.params if param.name == name), None)

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """A trial's value for every searched parameter."""
        return {param.name: param.suggest(trial) for param in self.params}

    def distributions(self) -> dict[str, BaseDistribution]:
        """What `suggest` records per parameter: for `optuna.trial.create_trial` and `study.add_trial`."""
        return {param.name: param.distribution() for param in self.params}

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's search space; every parameter must be a list of choices (checked at load)."""
        ranges = [param.name for param in self.params if not param.is_categorical]
        if ranges:
            raise ValueError(f"a grid needs lists of choices; {', '.join(ranges)} is a range")
        return {param.name: list(param.choices) for param in self.params}

    def summary(self) -> str:
        """Every parameter as the run header shows it."""
        return ", ".join(param.summary() for param in self.params)

    def check_as_written(self, base: TrainSettings, path: Path) -> None:
        """Refuse what Optuna would quietly bend: a choice listed twice (drawn twice as often) and a step that
        does not divide its range (Optuna lowers `high` to the last step, with a warning few read).

        Checked when a user's file is read for a run (`load_config`), not in the stored configs of studies
        that ran with them.
        """
        for param in self.params:
            where = f"{path} [search] {param.name}"
            repeated = next(
                (choice for index, choice in enumerate(param.choices) if choice in param.choices[:index]), None
            )
            if repeated is not None:
                raise ConfigError(
                    f"{where}: {repeated!r} is listed twice; list each choice once "
                    "(a repeated choice is drawn more often)"
                )
            if param.step is not None:
                _check_step_divides(param, base, where)

    def check_grid(self, path: Path) -> None:
        """Raise `ConfigError` naming the first range: `[sampler] kind = "grid"` enumerates lists of choices only."""
        for param in self.params:
            if not param.is_categorical:
                raise ConfigError(
                    f'{path} [search] {param.name}: a range, but [sampler] kind = "grid" needs a list of choices '
                    "for every parameter"
                )

    def point(self, entry: Any, base: TrainSettings, where: str) -> dict[str, Any]:
        """An `[[enqueue]]` entry checked: searched names only, each value in its parameter's space."""
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table of parameter values")
        by_name = {param.name: param for param in self.params}
        reject_unknown(entry, set(by_name), where)
        for name, value in entry.items():
            if not by_name[name].contains(value):
                raise ConfigError(f"{where} {name} = {value!r}: expected {by_name[name].expected()}")
        settings_with(base, entry, where)
        return dict(entry)


def parse_space(table: Any, base: TrainSettings, path: Path) -> SearchSpace:
    """The `[search]` table checked: known parameters, well-formed choices and ranges, values `base` accepts."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path} [search]: expected a table of parameters, got {table!r}")
    space = SearchSpace(tuple(_param(name, spec, base, f"{path} [search] {name}") for name, spec in table.items()))
    _check_combinations(space, base, path)
    return space


def settings_with(base: TrainSettings, changes: dict[str, Any], where: str) -> TrainSettings:
    """`base` with `changes`, or a `ConfigError` at `where` saying why they are not valid settings."""
    try:
        return base.replace(**changes)
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None


def _param(name: str, spec: Any, base: TrainSettings, where: str) -> ParamSpec:
    if name not in field_names():
        searchable = (field for field in field_names() if field not in PROCESS_SETTINGS)
        raise ConfigError(f"{where}: unknown parameter; searchable: {', '.join(searchable)}")
    if name in PROCESS_SETTINGS:
        raise ConfigError(f"{where}: set once per worker process, so it cannot be searched; set it in [training]")
    kind = field_types()[name]
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{where}: empty list of choices")
        param = ParamSpec(name, choices=tuple(typed(choice, kind, where) for choice in spec))
    elif isinstance(spec, dict):
        param = _range(name, spec, kind, where)
    else:
        raise ConfigError(f"{where} = {spec!r}: expected a list of choices or a {{low, high, log}} table")
    for value in param.choices or (param.low, param.high):
        settings_with(base, {name: value}, where)
    return param


def _range(name: str, spec: dict, kind: type, where: str) -> ParamSpec:
    if kind not in (int, float):
        raise ConfigError(f"{where}: a range needs a numeric parameter; give a list of choices")
    reject_unknown(spec, RANGE_KEYS, where)
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: a range needs both low and high")
    param = ParamSpec(
        name,
        low=typed(spec["low"], kind, f"{where} low"),
        high=typed(spec["high"], kind, f"{where} high"),
        log=typed(spec.get("log", False), bool, f"{where} log"),
        step=typed(spec["step"], kind, f"{where} step") if "step" in spec else None,
    )
    if not param.low < param.high:
        raise ConfigError(f"{where}: low = {param.low} must be below high = {param.high}")
    if param.log and param.low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0")
    if param.step is not None and param.step <= 0:
        raise ConfigError(f"{where}: step = {param.step} must be > 0")
    if param.log and param.step is not None:
        raise ConfigError(f"{where}: a log range takes no step")
    return param


def _check_step_divides(param: ParamSpec, base: TrainSettings, where: str) -> None:
    """A range's step must divide high - low; else name where Optuna would stop and the nearest valid highs.

    Decimal arithmetic on the values as written, as Optuna's own check does, so that 0.3 - 0.0 is 3 steps of 0.1.
    """
    low, high, step = (Decimal(str(value)) for value in (param.low, param.high, param.step))
    span = high - low
    if span % step == 0:
        return
    last = low + span // step * step
    highs = (value for value in (last, last + step) if value > low and _valid(base, param.name, param.kind(value)))
    nearest = " or ".join(str(param.kind(value)) for value in highs)
    raise ConfigError(
        f"{where}: step = {param.step} does not divide high - low = {span} (the range would stop at "
        f"{param.kind(last)}); nearest valid high: {nearest}"
    )


def _valid(base: TrainSettings, name: str, value: Any) -> bool:
    """Whether `base` takes `value` for setting `name`."""
    try:
        base.replace(**{name: value})
    except ValueError:
        return False
    return True


def _of_kind(value: Any, kind: type) -> bool:
    """Whether `value` has type `kind`: an int also passes for a float (a finite one), a bool never for a number."""
    if isinstance(value, bool) or kind is bool:
        return isinstance(value, bool) and kind is bool
    if kind is float:
        return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    return isinstance(value, kind)


def _check_combinations(space: SearchSpace, base: TrainSettings, path: Path) -> None:
    """Every batch size a trial can get must divide by every gradient accumulation it can get, whether either is
    a list, a range or the `[training]` value: a pair that does not was a trial failing before it trained."""
    batch = space.get("batch_size")
    accumulation = space.get("gradient_accumulation_steps")
    if batch is None and accumulation is None:
        return
    sizes = _IntValues(batch, base.batch_size)
    for steps in _IntValues(accumulation, base.gradient_accumulation_steps).all(limit=sizes.smallest()):
        size = sizes.not_divisible_by(steps)
        if size is not None:
            drawn = [f"[search] {param.summary()}" for param in (batch, accumulation) if param is not None]
            raise ConfigError(
                f"{path} {' with '.join(drawn)}: a trial can get batch_size = {size} with gradient_accumulation_steps "
                f"= {steps}, and the batch must divide into that many micro-batches; search values that divide"
            )


@dataclass(frozen=True)
class _IntValues:
    """The integers a setting takes: a searched list or range (every integer from low to high, by step), or
    its one `[training]` value when not searched."""

    param: ParamSpec | None
    fixed: int

    def _progression(self) -> tuple[int, int, int] | None:
        """(first, step, count) of a range; None for a list or a fixed value."""
        if self.param is None or self.param.is_categorical:
            return None
        low, high, step = int(self.param.low), int(self.param.high), int(self.param.step or 1)
        return low, step, (high - low) // step + 1

    def _listed(self) -> list[int]:
        """The values of a list or a fixed value, in order (a range has `_progression` instead)."""
        return [self.fixed] if self.param is None else sorted(self.param.choices)

    def smallest(self) -> int:
        progression = self._progression()
        return self._listed()[0] if progression is None else progression[0]

    def all(self, limit: int) -> list[int]:
        """Every value up to `limit`, and the first above it (any value above the smallest batch cannot divide it)."""
        progression = self._progression()
        if progression is None:
            return self._listed()
        first, step, count = progression
        return list(range(first, min(first + count * step, limit + step + 1), step))

    def not_divisible_by(self, divisor: int) -> int | None:
        """The smallest value that `divisor` does not divide, or None."""
        progression = self._progression()
        if progression is None:
            return next((value for value in self._listed() if value % divisor), None)
        first, step, count = progression
        if first % divisor:
            return first
        return first + step if count > 1 and step % divisor else None
