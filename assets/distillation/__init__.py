"""The distillation flow: prompts and documents → a teacher model through /v1/chat/completions
batches → a supervised fine-tuning dataset.

Partitioned by prompt source (`partitions.py`: the shipped sample's two partitions and one per
inbox file). The modules, in the order data flows:

* `requests.py` — ``distillation_requests`` / ``distillation_batch`` / ``distillation_results``
  from the lifecycle factory, with the builder that stores the prompt table;
* `dataset.py` — ``distillation_dataset`` (results → train/validation JSONL, metadata, card)
  and its checks;
* `sensors.py` — ``distillation_inbox_sensor``: a new or changed prompt file is a new run.

`defs` holds them without resources (the code location provides batch and artifacts).
"""

from dagster import Definitions

from assets.distillation.dataset import (
    checks,
    counts_add_up,
    distillation_dataset,
    enough_training_examples,
    lines_valid_for_fine_tuning,
    no_prompt_in_both_splits,
)
from assets.distillation.partitions import (
    NAME,
    distillation_partitions,
    partition_keys,
    register_partitions,
    settings,
)
from assets.distillation.requests import lifecycle
from assets.distillation.sensors import distillation_inbox_sensor

defs = Definitions(
    assets=[*lifecycle.assets, distillation_dataset],
    asset_checks=[*lifecycle.checks, *checks],
    sensors=[*lifecycle.sensors, distillation_inbox_sensor],
)

__all__ = [
    "NAME",
    "checks",
    "counts_add_up",
    "defs",
    "distillation_dataset",
    "distillation_inbox_sensor",
    "distillation_partitions",
    "enough_training_examples",
    "lifecycle",
    "lines_valid_for_fine_tuning",
    "no_prompt_in_both_splits",
    "partition_keys",
    "register_partitions",
    "settings",
]
