"""The embeddings flow: documents → chunks → /v1/embeddings batches → a Qdrant collection.

Partitioned by source shard (`partitions.py`: the shipped pydoc corpus's shards and one per
inbox file). The modules, in the order data flows:

* `requests.py` — ``embeddings_requests`` / ``embeddings_batch`` / ``embeddings_results`` from
  the lifecycle factory, with the builder that chunks the documents and stores the chunk table;
* `index.py` — ``embeddings_index`` (results → points in Qdrant) and its checks
  ``points_match_chunks`` and ``chunks_retrieve_themselves``;
* `sensors.py` — ``embeddings_inbox_sensor``: a new or changed file is a new run.

`defs` holds them without resources (the code location provides batch, artifacts and qdrant).
"""

from dagster import Definitions

from assets.embeddings.index import (
    chunks_retrieve_themselves,
    embeddings_index,
    points_match_chunks,
)
from assets.embeddings.partitions import (
    NAME,
    embeddings_partitions,
    partition_keys,
    register_partitions,
    settings,
)
from assets.embeddings.requests import lifecycle
from assets.embeddings.sensors import embeddings_inbox_sensor

defs = Definitions(
    assets=[*lifecycle.assets, embeddings_index],
    asset_checks=[*lifecycle.checks, points_match_chunks, chunks_retrieve_themselves],
    sensors=[*lifecycle.sensors, embeddings_inbox_sensor],
)

__all__ = [
    "NAME",
    "chunks_retrieve_themselves",
    "defs",
    "embeddings_inbox_sensor",
    "embeddings_index",
    "embeddings_partitions",
    "lifecycle",
    "partition_keys",
    "points_match_chunks",
    "register_partitions",
    "settings",
]
