"""The one exception for unusable input data."""

from __future__ import annotations


class DataError(ValueError):
    """Input data that cannot be used as given; the message names the file or folder and what was expected."""
