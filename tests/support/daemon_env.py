"""The environment a user's ``dagster dev`` would have in non-blocking mode, every folder in a
test's temporary one; a fresh DAGSTER_HOME."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from assets.instance import REPO_SETTINGS, create_storage
from support.server import ServerHandle


def dagster_home(root: Path, settings: Path = REPO_SETTINGS) -> Path:
    """A fresh DAGSTER_HOME under `root` holding `settings` as its dagster.yaml; with the repo's
    settings, its storage created as ``python -m assets.instance`` (``make dev``) creates it
    (other settings, e.g. Postgres from variables the caller sets later, are the caller's)."""
    home = root / "dagster_home"
    home.mkdir(parents=True)
    shutil.copyfile(settings, home / "dagster.yaml")
    if settings == REPO_SETTINGS:
        create_storage(home)
    return home


def flow_env(root: Path, server: ServerHandle, pydoc_shards: int) -> dict[str, str]:
    """The code location's settings: the local engine at `server`, runs that return after
    submitting (BATCH_BLOCKING=0), artifacts, Qdrant and inboxes under `root`, quick sensors.

    `pydoc_shards` makes the embeddings partitions (``pydoc-1-of-<n>``) this test's own: batches
    other tests leave on the shared engine belong to other partitions."""
    env = {
        **os.environ,
        "BATCH_PROVIDER": "local",
        "BATCH_BASE_URL": server.base_url,
        "BATCH_BLOCKING": "0",
        "BATCH_POLL_INTERVAL": "0.5",
        "BATCH_ARTIFACTS_URI": str(root / "artifacts"),
        "QDRANT_PATH": str(root / "qdrant"),
        "QDRANT_COLLECTION": "daemon",
        "EMBEDDINGS_PYDOC_SHARDS": str(pydoc_shards),
        "EMBEDDINGS_WATCH_URI": str(root / "inbox" / "embeddings"),
        "DISTILLATION_WATCH_URI": str(root / "inbox" / "distillation"),
        "MODERATION_WATCH_URI": str(root / "inbox" / "moderation"),
        "SENSOR_INTERVAL_SECONDS": "1",  # the daemon's loop still ticks every ~5 s
        "RUN_EXECUTOR": "in_process",  # no process (and code load) per step
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for name in ("QDRANT_URL", "QDRANT_API_KEY", "BATCH_API_KEY", "DAGSTER_HOME"):
        env.pop(name, None)
    return env
