"""How a lifecycle treats its provider: limits, patience, attempts, budget — one object.

``Policy`` is what the lifecycle functions take instead of a dozen keyword arguments; the
Dagster batch resource builds one from its settings (``BatchResource.policy()``), a script
builds one by hand::

    policy = Policy(get_profile("nebius"), max_attempts=3, poll_interval=60,
                    budget=Budget(Decimal("25"), PriceTable.default()))
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from batch_workflows.errors import BudgetExceededError
from batch_workflows.lifecycle.keys import check_namespace, check_user_metadata
from batch_workflows.pricing import PriceTable, estimate_cost
from batch_workflows.profiles import ProviderProfile


@dataclass(frozen=True)
class Budget:
    """A cap on what one submission may cost at the batch rate, estimated before uploading."""

    max_cost_usd: Decimal
    prices: PriceTable

    def check(self, request_files: Sequence[str | os.PathLike[str]]) -> Decimal:
        """The estimated cost of `request_files`; BudgetExceededError above the cap."""
        estimate = estimate_cost(list(request_files), self.prices)
        usd = Decimal(str(estimate.usd))
        if usd > self.max_cost_usd:
            raise BudgetExceededError(
                f"estimated cost ${usd} ({estimate.input_tokens} input, {estimate.output_tokens} "
                f"output tokens at the batch rate) is above max_cost_usd=${self.max_cost_usd}; "
                "nothing was submitted and nothing was cancelled")
        return usd


@dataclass(frozen=True)
class Policy:
    """The provider's limits and the lifecycle's policies for one flow.

    `profile` gives the shard limits, the in-flight cap, the completion window and the
    enqueued-token quota; `wait_timeout` bounds a blocking wait and a wait for in-flight room
    (None: no deadline); `capacity_timeout` bounds the wait for the provider's capacity (the
    quota, creates refused with 429, batches failed with ``token_limit_exceeded``), None: the
    same as `wait_timeout`; `prices` price the summary (None: no cost); `metadata` and
    `extra_body` go on every batch create of every attempt.

    `namespace` is the deployment's part of every batch's identity (``namespace.Owner``): the
    Dagster batch resource sets it (by default from its artifact store); None (a script) makes
    batches without one. `delete_input_files` deletes each batch's input file at the provider
    once the batch is terminal and its results are stored.
    """

    profile: ProviderProfile
    max_attempts: int = 3
    poll_interval: float = 5.0
    wait_timeout: float | None = None
    budget: Budget | None = None
    prices: PriceTable | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    extra_body: Mapping[str, Any] | None = None
    namespace: str | None = None
    capacity_timeout: float | None = None
    delete_input_files: bool = True

    def __post_init__(self) -> None:
        check_user_metadata(self.metadata)
        if self.namespace:
            check_namespace(self.namespace)
        self.profile.check_window(self.profile.completion_window)

    @property
    def capacity_deadline(self) -> float | None:
        """Seconds to wait for the provider's capacity (None: no deadline)."""
        return self.capacity_timeout if self.capacity_timeout is not None else self.wait_timeout

    def token_limit(self, model: str | None) -> int | None:
        """The enqueued-token limit of `model` (None: no quota)."""
        return self.profile.enqueued_token_limit(model)

    @property
    def completion_window(self) -> str:
        return self.profile.completion_window

    def check_budget(self, request_files: Sequence[str | os.PathLike[str]]) -> Decimal | None:
        """The estimate under the budget (None without one); BudgetExceededError above it."""
        return self.budget.check(request_files) if self.budget is not None else None
