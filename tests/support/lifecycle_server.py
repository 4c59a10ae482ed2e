"""One local batch server per test process, shared by tests/lifecycle and tests/assets.

Session fixtures in two conftest files would start two servers (two embedding model loads);
this module keeps a single one and stops it when the process exits.
"""

from __future__ import annotations

import atexit
import tempfile
from pathlib import Path

from support.server import ServerHandle, start_server

_server: ServerHandle | None = None


def shared_server() -> ServerHandle:
    """The process-wide server (started on first use, default settings, no API key)."""
    global _server
    if _server is None or _server.process is None or _server.process.poll() is not None:
        root = Path(tempfile.mkdtemp(prefix="bw-lifecycle-server-"))
        # Small chunks: expiry and cancellation are checked between chunks, so they act promptly.
        _server = start_server(root, max_concurrent_batches=4, chunk_size=16)
        atexit.register(_server.stop)
    return _server
