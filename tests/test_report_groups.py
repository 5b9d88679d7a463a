"""The report's parameter groups (`value_groups`): quantile bins of numeric parameters and their labels."""

from __future__ import annotations

import numpy as np
import pandas as pd

from optimize.results.report._tables import value_groups
from optimize.search.space import ParamSpec

LEARNING_RATE = ParamSpec("learning_rate", low=1e-5, high=1e-2, log=True)


def test_bins_whose_edges_agree_to_three_digits_get_labels_with_more_digits():
    """Learning rates a hair apart: the quantile edges differ, but not in their first three digits."""
    rates = pd.Series([1e-4, 1.0001e-4, 1.0002e-4, 1.0003e-4, 1.0004e-4, 1.0005e-4, 1.0006e-4, 1.0007e-4, 5e-3])
    groups = value_groups(rates, LEARNING_RATE)
    labels = list(groups.cat.categories)
    assert len(labels) == 4 and len(set(labels)) == 4 and groups.cat.ordered
    assert labels[0].startswith("0.0001–0.0001") and labels[-1].endswith("–0.005")
    assert groups.notna().all() and groups.value_counts(sort=False).tolist() == [3, 2, 2, 2]


def test_bins_keep_three_digit_labels_when_those_tell_them_apart():
    rates = pd.Series(10 ** np.linspace(-5, -2, 12))
    groups = value_groups(rates, LEARNING_RATE)
    edges = 10 ** np.quantile(np.log10(rates), np.linspace(0, 1, 5))
    assert list(groups.cat.categories) == [f"{lo:.3g}–{hi:.3g}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    assert groups.value_counts(sort=False).tolist() == [3, 3, 3, 3]
