"""server.launch without Dagster: an engine that cannot start is reported with its log."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.server import free_port

from batch_workflows.errors import ConfigurationError
from batch_workflows.server.launch import engine_is_up, ensure_engine, health_url
from batch_workflows.server.store import lock_data_dir


def test_health_url_is_beside_the_api_root():
    assert health_url("http://127.0.0.1:8765/v1") == "http://127.0.0.1:8765/health"


def test_an_engine_that_exits_at_start_is_an_error_naming_its_log(tmp_path: Path):
    data_dir = tmp_path / "engine"
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    lock = lock_data_dir(data_dir)  # as a server already running on that data dir holds it
    try:
        with pytest.raises(ConfigurationError, match=r"exited with code 1; see .*engine\.log"):
            ensure_engine(base_url, data_dir, timeout=120)
    finally:
        lock.close()
    assert "another server is already using" in (data_dir / "engine.log").read_text()
    assert (data_dir / "engine.pid").exists() and not engine_is_up(base_url)
