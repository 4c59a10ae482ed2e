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
from batch_workflows.lifecycle.keys import check_user_metadata
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

    `profile` gives the shard limits, the in-flight cap and the completion window;
    `wait_timeout` bounds a blocking wait and a wait for in-flight room (None: no deadline);
    `prices` price the summary (None: no cost); `metadata` and `extra_body` go on every batch
    create of every attempt.
    """

    profile: ProviderProfile
    max_attempts: int = 3
    poll_interval: float = 5.0
    wait_timeout: float | None = None
    budget: Budget | None = None
    prices: PriceTable | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    extra_body: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        check_user_metadata(self.metadata)

    @property
    def completion_window(self) -> str:
        return self.profile.completion_window

    def check_budget(self, request_files: Sequence[str | os.PathLike[str]]) -> Decimal | None:
        """The estimate under the budget (None without one); BudgetExceededError above it."""
        return self.budget.check(request_files) if self.budget is not None else None
