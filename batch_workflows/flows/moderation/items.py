"""The item table: the flow's side table, one row per item of a day, keyed by ``custom_id``.

Written while the requests are built (``moderation/<day>/items.parquet``); the verdict step
reads it back beside the results, because a verdict row needs the item's id, text and labels,
none of which come back from the provider.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from batch_workflows.flows.moderation.backlog import Item
from batch_workflows.flows.side_table import DEFAULT_ROW_GROUP, SideTableWriter

ITEM_PREFIX = "item:"  # an item's custom_id is ITEM_PREFIX + its id

ITEM_SCHEMA = pa.schema([
    ("custom_id", pa.string()),
    ("id", pa.string()),
    ("text", pa.string()),
    ("created_at", pa.string()),
    ("labels", pa.list_(pa.string())),  # null: unlabelled; []: labelled safe
    ("line", pa.int64()),
])


def item_custom_id(item_id: str) -> str:
    return ITEM_PREFIX + item_id


class ItemTableWriter:
    """Streams items to the item table (row groups: memory stays flat), counting them."""

    def __init__(self, path: str | Path, row_group: int = DEFAULT_ROW_GROUP):
        self._table = SideTableWriter(path, ITEM_SCHEMA, row_group)
        self.path = self._table.path
        self.items = 0
        self.labelled = 0

    def add(self, item: Item) -> str:
        """Record one item; returns its custom_id."""
        cid = item_custom_id(item.id)
        self._table.append({"custom_id": cid, "id": item.id, "text": item.text,
                            "created_at": item.created_at,
                            "labels": None if item.labels is None else list(item.labels),
                            "line": item.line})
        self.items += 1
        self.labelled += item.labels is not None
        return cid

    def close(self) -> None:
        self._table.close()
