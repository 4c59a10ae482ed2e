"""The lifecycle in Dagster: a factory of requests → batch → results assets, sensor and checks.

``batch_lifecycle(name, partitions_def, endpoint, build_requests)`` defines them for a flow
(``factory``); downstream assets depend on ``<name>_results`` (``deps=[lifecycle.results]``)
and read its rows with ``load_results`` / ``fetch_results`` (``results``). The lifecycle itself
is ``batch_workflows.lifecycle``: this package only wires it into assets (``steps``), a
tracking sensor (``sensor``), checks (``checks``) and metadata (``metadata``).
"""

from assets.lifecycle.checks import CHECK_ACCOUNTED, CHECK_ERROR_RATE
from assets.lifecycle.factory import (
    DEFAULT_OWNERS,
    GROUP_DESCRIPTION_KEY,
    BatchLifecycle,
    accept_backfill_policy,
    batch_lifecycle,
)
from assets.lifecycle.results import fetch_results, load_results, results_key
from assets.lifecycle.spec import LifecycleSpec, RequestBuilder
from batch_workflows.lifecycle import partition_dir

__all__ = [
    "CHECK_ACCOUNTED", "CHECK_ERROR_RATE", "DEFAULT_OWNERS", "GROUP_DESCRIPTION_KEY",
    "BatchLifecycle", "LifecycleSpec", "RequestBuilder", "accept_backfill_policy",
    "batch_lifecycle", "fetch_results",
    "load_results", "partition_dir", "results_key",
]
