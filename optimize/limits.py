"""Bounds that both the command line and the study file check, kept where reading them costs nothing
(`optimize --help` must not wait for Optuna to load)."""

MAX_SEED = 2**32 - 1
"""The largest seed numpy's and scikit-learn's generators take (seeds run from 0)."""
MIN_SYNTHETIC_SIZE = 8
"""The smallest synthetic image `data.make_microbeads` draws beads on."""
