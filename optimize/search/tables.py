"""TOML tables of a study file checked against what they fill: known keys only, values of the declared types.

Every error names where the value is (file, section and key, as `where`) and what was expected.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from optimize.errors import ConfigError


def build(cls: type, table: Any, where: str) -> Any:
    """Instantiate a config dataclass from a TOML table, checking keys and value types."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table of keys, got {table!r}")
    hints = typing.get_type_hints(cls)
    reject_unknown(table, set(hints), where)
    values = {name: typed(value, hints[name], f"{where} {name}") for name, value in table.items()}
    try:
        return cls(**values)
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None


def typed(value: Any, hint: Any, where: str) -> Any:
    """`value` checked against a type hint (int accepted for float; bool never for numbers).

    TOML writes `nan` and `inf`, which no setting takes: a float must be finite (NaN would not even equal
    itself when a worker's settings are compared with its study's).
    """
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if option is type(None):
            continue
        if dataclasses.is_dataclass(option) and isinstance(value, dict):
            return build(option, value, where)
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return _finite(value, where)
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option in (bool, str) and isinstance(value, option):
            return value
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options if o is not type(None))
    raise ConfigError(f"{where} = {value!r}: expected {expected}")


def _finite(value: int | float, where: str) -> float:
    """`value` as a float, which must be finite (an int too large for a float is not)."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ConfigError(f"{where} = {value!r}: expected a finite number")
    return number


def reject_unknown(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
