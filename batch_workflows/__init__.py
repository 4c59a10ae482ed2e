"""batch-workflows: batch inference over OpenAI-format Batch APIs, usable without Dagster.

The names a script or notebook needs, importable from here::

    from batch_workflows import (EMBEDDINGS, BatchClient, Policy, get_profile, iter_requests,
                                 run_to_completion)

    policy = Policy(get_profile("local"), poll_interval=1)
    with BatchClient("http://127.0.0.1:8765/v1") as client:
        outcome = run_to_completion(client, iter_requests("requests.jsonl"), "work",
                                    name="notebook", endpoint=EMBEDDINGS, policy=policy)
    print(outcome.summary.counts)

They load on first use (``import batch_workflows`` alone is cheap: the command line's
``validate`` never pays for pyarrow or httpx). Subpackages: ``requests`` (validation,
sharding), ``results`` (joining), ``lifecycle`` (submit → track → collect), ``client``,
``server`` and ``backends`` (the local engine), ``flows`` (each flow's logic), ``cli``.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name → the module that defines it.
_EXPORTS = {
    # requests: validate before paying, shard within the provider's limits
    "BatchRequest": "batch_workflows.wire",
    "iter_requests": "batch_workflows.requests",
    "validate_file": "batch_workflows.requests",
    "validate_requests": "batch_workflows.requests",
    "write_shards": "batch_workflows.requests",
    "ShardManifest": "batch_workflows.requests",
    # results: one row per custom_id
    "join_results": "batch_workflows.results",
    "ResultSet": "batch_workflows.results",
    # the Batch API
    "BatchClient": "batch_workflows.client",
    # the lifecycle
    "Budget": "batch_workflows.lifecycle",
    "LocalFolder": "batch_workflows.lifecycle",
    "Policy": "batch_workflows.lifecycle",
    "collect_partition": "batch_workflows.lifecycle",
    "read_summary": "batch_workflows.lifecycle",
    "run_to_completion": "batch_workflows.lifecycle",
    "submission_key": "batch_workflows.lifecycle",
    "submit_partition": "batch_workflows.lifecycle",
    "track_batches": "batch_workflows.lifecycle",
    "write_requests": "batch_workflows.lifecycle",
    # providers and prices
    "CHAT": "batch_workflows.profiles",
    "EMBEDDINGS": "batch_workflows.profiles",
    "PROFILES": "batch_workflows.profiles",
    "ProviderProfile": "batch_workflows.profiles",
    "get_profile": "batch_workflows.profiles",
    "PriceTable": "batch_workflows.pricing",
    "batch_price": "batch_workflows.pricing",
    "cost_of_results": "batch_workflows.pricing",
    "estimate_cost": "batch_workflows.pricing",
    # errors
    "BatchError": "batch_workflows.errors",
    "BatchTimeoutError": "batch_workflows.errors",
    "BudgetExceededError": "batch_workflows.errors",
    "ConfigurationError": "batch_workflows.errors",
    "InvalidInputError": "batch_workflows.errors",
    "ProviderError": "batch_workflows.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'batch_workflows' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

