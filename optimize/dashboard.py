"""`optimize dashboard`: optuna-dashboard on the study's storage."""

from __future__ import annotations

import optuna


def serve_dashboard(storage: optuna.storages.BaseStorage, study_name: str, host: str, port: int) -> None:
    """Serve optuna-dashboard until interrupted; it shows every study in the storage, this one at its page."""
    from optuna_dashboard import run_server

    base = f"http://{host}:{port}/dashboard"
    study_id = storage.get_study_id_from_name(study_name)
    print(
        f"optuna-dashboard for study {study_name!r}: {base}/studies/{study_id}  (all studies: {base}/; Ctrl-C to stop)",
        flush=True,
    )
    run_server(storage, host=host, port=port)
