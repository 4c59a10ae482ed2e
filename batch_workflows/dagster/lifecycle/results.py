"""What downstream assets use to read a partition's results from the artifact store."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batch_workflows.dagster.resources.artifacts import ArtifactStore
from batch_workflows.lifecycle import PartitionLayout


def results_key(name: str, partition_key: str | None) -> str:
    """Artifact key of the final results Parquet of a partition."""
    return PartitionLayout(name, partition_key).results


def fetch_results(artifacts: ArtifactStore, name: str, partition_key: str | None,
                  local_path: str | Path) -> Path:
    """Copy a partition's results Parquet to `local_path` (streamed) and return the path."""
    return artifacts.get_file(results_key(name, partition_key), local_path)


def load_results(artifacts: ArtifactStore, name: str, partition_key: str | None,
                 columns: Sequence[str] | None = None, status: str | None = "succeeded") -> Any:
    """A partition's results as a pandas DataFrame (rows with `status`; None = all rows)."""
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="bw-results-") as tmp:
        path = fetch_results(artifacts, name, partition_key, Path(tmp) / "results.parquet")
        filters = [("status", "=", status)] if status else None
        table = pq.read_table(path, columns=list(columns) if columns else None, filters=filters)
        return table.to_pandas()
