"""What every handler of one server shares, held on the Starlette app as `app.state.server`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

from starlette.requests import Request

from batch_workflows.server.registry import BackendRegistry
from batch_workflows.server.settings import ServerSettings
from batch_workflows.server.store import Store, lock_data_dir
from batch_workflows.server.worker import Worker


@dataclass
class ServerState:
    """One server's settings, metadata store, backends and batch worker."""

    settings: ServerSettings
    store: Store
    backends: BackendRegistry
    worker: Worker
    data_dir_lock: IO[bytes]  # held for the process's lifetime: one server per data dir

    @classmethod
    def open(cls, settings: ServerSettings) -> ServerState:
        """Lock the data dir (ConfigurationError if another server holds it) and build the rest."""
        lock = lock_data_dir(settings.data_dir)
        store = Store(settings.data_dir)
        backends = BackendRegistry(settings)
        return cls(settings, store, backends, Worker(settings, store, backends), lock)


def server_state(request: Request) -> ServerState:
    """The state of the server that received `request`."""
    return request.app.state.server
