"""`optimize dashboard`: optuna-dashboard on the study's storage."""

from __future__ import annotations

import optuna


def serve_dashboard(storage: optuna.storages.BaseStorage, study_name: str, host: str, port: int) -> None:
    """Serve optuna-dashboard until interrupted; it shows every study in the storage."""
    from optuna_dashboard import run_server

    print(
        f"optuna-dashboard for study {study_name!r}: http://{host}:{port}/dashboard/  (Ctrl-C to stop)",
        flush=True,
    )
    run_server(storage, host=host, port=port)
