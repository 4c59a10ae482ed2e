"""Requests built from the rows of a pandas DataFrame, for the shard writer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from batch_workflows.errors import ConfigurationError

if TYPE_CHECKING:
    import pandas as pd


def requests_from_dataframe(
    df: pd.DataFrame,
    body_fn: Callable[[dict[str, Any]], dict[str, Any]],
    id_column: str,
    url: str,
    chunk_rows: int = 4096,
) -> Iterator[dict[str, Any]]:
    """Requests from DataFrame rows: `body_fn(row_as_dict)` gives the body, `id_column` the id.

    Integer ids become strings; anything else is passed on for the validator to judge.
    """
    if id_column not in df.columns:
        raise ConfigurationError(f"column {id_column!r} is not in the DataFrame")
    for start in range(0, len(df), chunk_rows):
        for row in df.iloc[start : start + chunk_rows].to_dict("records"):
            cid = row[id_column]
            if isinstance(cid, int) and not isinstance(cid, bool):
                cid = str(cid)
            elif hasattr(cid, "item") and type(cid.item()) is int:  # numpy integer
                cid = str(cid.item())
            yield {"custom_id": cid, "method": "POST", "url": url, "body": body_fn(row)}
