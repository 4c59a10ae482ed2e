"""The one-slot pool that serialises a provider's submissions, set for that pool only.

``<name>_batch`` and the resubmitting ``<name>_results`` run in ``batch_submit_<resource key>``:
one at a time, each sees the in-flight count and the batches of the one before it (no double
submission, no overshoot of the in-flight cap). Dagster keeps pool limits in the instance's
storage, so the lifecycle sets this pool's limit there the first time it meets the instance (a
step, a sensor tick) — unless the instance already has one for it: ``dagster instance
concurrency set batch_submit_batch 4`` is the user's to choose, and is kept. No other pool, and
no instance-wide default, is touched.
"""

from __future__ import annotations

from typing import Any

SUBMISSION_SLOTS = 1


def ensure_pool(instance: Any, pool: str, slots: int = SUBMISSION_SLOTS) -> bool:
    """Give `pool` `slots` slots when the instance has no limit of its own for it; True when
    it was set now."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return False
    if pool in storage.get_concurrency_keys():
        return False
    storage.set_concurrency_slots(pool, slots)
    return True
