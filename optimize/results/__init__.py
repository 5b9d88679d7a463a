"""A study's results read back from its database; no Keras here, so these commands run anywhere.

`record` owns what a trial stores about itself; `frame` turns trials into tables; `export` writes
`export-best`'s files, `status` the `optimize status` text, `dashboard` serves optuna-dashboard and
`report/` writes the analysis; `formatting` is how values look to a person.
"""

from optimize.results.export import export_best
from optimize.results.formatting import format_duration, format_params, format_value
from optimize.results.frame import history_frame, stored_config, trials_frame
from optimize.results.record import HISTORY_COLUMNS, stored_history
from optimize.results.status import status_text

__all__ = [
    "HISTORY_COLUMNS",
    "export_best",
    "format_duration",
    "format_params",
    "format_value",
    "history_frame",
    "status_text",
    "stored_config",
    "stored_history",
    "trials_frame",
]
