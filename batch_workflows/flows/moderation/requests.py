"""A day's requests: one batch line per item (the judge's ``request`` hook), each item recorded
in the item table on the way, then the judge's extra lines (the embedding strategy's anchors)
when the day has any item. A day without items has no requests at all."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from batch_workflows.flows.moderation.backlog import Item
from batch_workflows.flows.moderation.items import ItemTableWriter
from batch_workflows.flows.moderation.judges import Judge


def day_requests(items: Iterable[Item], table: ItemTableWriter,
                 judge: Judge) -> Iterator[dict[str, Any]]:
    for item in items:
        yield judge.request(table.add(item), item.text)
    if table.items:
        yield from judge.extra_requests()
