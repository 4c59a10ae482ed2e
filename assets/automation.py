"""How the daemon drives the code location on its own: the automation-condition sensor, on by
default, and ``SENSOR_INTERVAL_SECONDS``, the one setting that shortens every sensor's interval.

Dagster evaluates ``AutomationCondition``s (``embeddings_index``'s ``eager()``, ...) only in an
automation-condition sensor. The one Dagster adds by itself, ``default_automation_condition_sensor``,
starts STOPPED, so after the daemon's ``<name>_batch_sensor`` has collected a batch, the
downstream asset waited until someone toggled that sensor on in the UI. ``automation_sensor()``
targets every asset of the code location and is RUNNING by default (Dagster's documented way:
``AutomationConditionSensorDefinition(..., default_status=RUNNING)``); with it present, Dagster
adds no default sensor. It can still be stopped in the UI (Automation tab).

``SENSOR_INTERVAL_SECONDS`` (read when the code location loads): the minimum interval of every
sensor of the code location (batch tracking, inboxes, automation). Unset, each keeps its own
(15 s, 30 s, 30 s). Tests and demos set it low; the daemon's loop still ticks at most every ~5 s.
"""

from __future__ import annotations

import os

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus

from batch_workflows.errors import ConfigurationError

AUTOMATION_SENSOR_NAME = "automation_condition_sensor"
INTERVAL_VARIABLE = "SENSOR_INTERVAL_SECONDS"
AUTOMATION_INTERVAL_SECONDS = 30  # Dagster's own default for automation-condition sensors


def sensor_interval(default: int) -> int:
    """``SENSOR_INTERVAL_SECONDS`` when set, else `default`; ConfigurationError naming the
    variable when it is not a whole number of at least 1."""
    text = os.environ.get(INTERVAL_VARIABLE, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise ConfigurationError(f"{INTERVAL_VARIABLE}={text!r}: expected whole seconds, at least 1")
    return int(text)


def automation_sensor() -> AutomationConditionSensorDefinition:
    """The code location's automation-condition sensor: every asset, RUNNING by default."""
    return AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR_NAME,
        target=AssetSelection.all(),
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=sensor_interval(AUTOMATION_INTERVAL_SECONDS),
        description="Evaluates the automation conditions of every asset (e.g. embeddings_index "
        "materializes once embeddings_results has); on by default so collected batches are "
        "followed without anyone in the UI.",
    )
