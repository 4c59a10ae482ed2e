"""Reading what a `dagster.materialize` result holds: an asset's metadata, the checks' verdicts."""

from __future__ import annotations

from typing import Any


def materialization_metadata(result: Any, asset: str) -> dict[str, Any]:
    """The metadata values of the one materialization of `asset` in the run."""
    (mat,) = [m for m in result.get_asset_materialization_events()
              if m.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in mat.materialization.metadata.items()}


def check_verdicts(result: Any) -> dict[str, bool]:
    """Each asset check evaluated in the run: its name and whether it passed."""
    return {e.event_specific_data.check_name: e.event_specific_data.passed
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
