"""``embeddings_inbox_sensor``: a partition, and a run of the flow, for each new or changed file
under ``EMBEDDINGS_WATCH_URI``; its ticks also register the shipped corpus's partitions."""

from __future__ import annotations

from assets.automation import sensor_interval
from assets.embeddings.index import embeddings_index
from assets.embeddings.partitions import corpus_partition_keys, embeddings_partitions, inbox_files
from assets.embeddings.requests import lifecycle
from batch_workflows.dagster import inbox_sensor

embeddings_inbox_sensor = inbox_sensor(
    "embeddings_inbox_sensor",
    embeddings_partitions,
    inbox_files,
    [*lifecycle.assets, embeddings_index],
    extra_partitions=corpus_partition_keys,
    minimum_interval_seconds=sensor_interval(30),
    description="Adds a partition (and runs the flow) for each new or changed file under "
    "EMBEDDINGS_WATCH_URI; registers the shipped pydoc corpus partitions.",
)
