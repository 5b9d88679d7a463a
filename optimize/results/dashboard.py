"""`optimize dashboard`: optuna-dashboard on the study's storage."""

from __future__ import annotations

import socket
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna

from optimize.errors import UsageError
from optimize.results.frame import stored_config
from optimize.storage.artifacts import resolve_artifact_folder


def serve_dashboard(study: optuna.Study, url: str, artifacts: str | None, host: str, port: int) -> None:
    """Serve optuna-dashboard until interrupted; it shows every study in the storage, this one at its page,
    with the models kept in the study's artifact folder (`--artifacts`, see `optimize.storage.artifacts`).

    The storage `optimize dashboard` passes is read-only: the dashboard shows the study and never changes
    it (saving a note in its page fails). A port in use or a host that cannot be bound is a `UsageError`.
    Served with wsgiref, as `optuna_dashboard.run_server` does, but from a thread: a stop signal then
    arrives in this (main) thread, never inside a request, where wsgiref would answer it with an error
    page and keep serving. It shuts the server down and reaches the caller (`run_server` returns quietly
    on Ctrl-C instead), so the command ends with one line and exit 130 or 143.
    """
    from optuna_dashboard import wsgi

    storage, study_name = study._storage, study.study_name
    study_id = storage.get_study_id_from_name(study_name)
    config = stored_config(study)
    folder = resolve_artifact_folder(study_name, url, artifacts, config.artifacts_dir() if config else None)
    if folder.path.exists() and not folder.path.is_dir():
        raise UsageError(f"{folder.path} ({folder.source}) is a file; expected the folder of the study's kept models")
    if artifacts and not folder.path.exists():
        raise UsageError(f"--artifacts {artifacts}: {folder.path} does not exist; expected the kept models' folder")
    store = folder.store() if folder.path.is_dir() else None
    server_class = IPv6Server if ":" in host else WSGIServer
    try:
        server = make_server(host, port, wsgi(storage, artifact_store=store), server_class, QuietHandler)
    except OSError as error:
        raise UsageError(f"--host {host} --port {port}: cannot serve there ({error.strerror or error})") from None
    base = f"http://{host}:{port}/dashboard"
    print(
        f"optuna-dashboard for study {study_name!r}: {base}/studies/{study_id}  (all studies: {base}/; Ctrl-C to stop)",
        flush=True,
    )
    print(f"models: {folder.path}" if store else f"models: none ({folder.path} does not exist)", flush=True)
    with server:
        serving = threading.Thread(target=server.serve_forever, name="dashboard", daemon=True)
        serving.start()
        try:
            while serving.is_alive():
                serving.join(timeout=1.0)
        finally:
            server.shutdown()


class IPv6Server(WSGIServer):
    address_family = socket.AF_INET6


class QuietHandler(WSGIRequestHandler):
    """No line per request on stderr (errors in the app are still printed)."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def address_string(self) -> str:
        return self.client_address[0]
