"""The Dagster instance folder (DAGSTER_HOME) the demo and ``make dev`` share.

    python -m assets.instance        # prints the folder, creating it with the repo's settings

The repo's ``dagster.yaml`` (one slot per concurrency pool, so submissions to a provider are
serialised; telemetry off) is copied in when the folder has none yet, or only the telemetry
line earlier demos wrote. An existing ``dagster.yaml`` of yours is left alone. The instance's
storage is then created here, in one process, before any service starts (see
`create_storage`).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

REPO_SETTINGS = Path(__file__).resolve().parent.parent / "dagster.yaml"
DEFAULT_HOME = ".data/dagster"
_OLD_DEMO_SETTINGS = "telemetry:\n  enabled: false\n"


def prepare_dagster_home() -> Path:
    """DAGSTER_HOME (default .data/dagster), created, with the repo's settings when it has none."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists() or settings.read_text() == _OLD_DEMO_SETTINGS:
        shutil.copyfile(REPO_SETTINGS, settings)
    create_storage(home)
    return home


def create_storage(home: Path) -> None:
    """Create (or migrate) the instance's storage now, in this one process.

    ``dagster dev`` starts its webserver, daemon and code server at once, and on a fresh folder
    each creates the missing SQLite storage: two can stamp the schema twice, and every later
    process fails with "Version table 'alembic_version' has more than one head present". The
    code server takes part because loading a defs folder reads the instance's definitions
    state (``load_from_defs_folder``). Idempotent; a broken configuration fails here, naming it.
    """
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)):
        pass


if __name__ == "__main__":
    print(prepare_dagster_home())
    sys.exit(0)
