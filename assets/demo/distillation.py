"""The demo's distillation part: a few shipped prompts → the teacher → a fine-tuning dataset."""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from pathlib import Path

from assets.demo.console import say
from assets.demo.cost import CHAT_MODELS, show_cost, tokens_of
from assets.demo.session import Session

PARTITION = "demo-prompts.jsonl"  # an inbox file: a partition of its own
PROMPTS_PER_TASK = 3  # of each of the shipped prompts' six tasks: a short run on a CPU
DEMO_MAX_TOKENS = "96"  # the demo's answers stay short (DISTILLATION_MAX_TOKENS wins if set)
EXAMPLES = 3


def run(session: Session) -> bool:
    """Write the demo's prompt file (once), materialize it, show the dataset and three lines."""
    from assets.flows import load_flow

    os.environ.setdefault("DISTILLATION_MAX_TOKENS", DEMO_MAX_TOKENS)  # before the YAML loads
    flow = load_flow("distillation")  # assets/defs/distillation/defs.yaml, the environment now
    settings = flow.settings
    inbox = Path(settings.watch_uri)
    if not (inbox / PARTITION).exists():
        _write_prompts(inbox / PARTITION)
    flow.register_partitions(session.instance, [PARTITION])
    say(f"prompts: {inbox / PARTITION}; teacher {settings.model}, max_tokens "
        f"{settings.max_tokens}, temperature {settings.temperature}")
    selection = [*flow.lifecycle.assets, flow.dataset, *flow.lifecycle.checks, *flow.checks]
    say(f"\n-- partition {PARTITION}")
    run = session.materialize(selection, PARTITION)
    dataset = run.metadata(flow.dataset.key.to_user_string())
    if dataset is None:
        return False
    dropped = {k.removeprefix("dropped_"): v for k, v in dataset.items()
               if k.startswith("dropped_") and v}
    say("\n== distillation outputs")
    say(f"dataset: {dataset['train_path']} and {dataset['validation_path']} (metadata.parquet, "
        "card.json and README.md beside them)")
    say(f"{dataset['requests_submitted']} requests: {dataset['kept']} examples kept "
        f"({dataset['train']} train, {dataset['validation']} validation), dropped {dropped or 0}")
    _show_examples(session, flow)
    show_cost("the teacher's answers", *tokens_of(session, flow.name, [PARTITION]), CHAT_MODELS)
    return run.result.success


def _write_prompts(path: Path) -> None:
    """A few of the shipped prompts of every task, as a user's prompt file."""
    from batch_workflows.flows.distillation.prompts import shipped_prompts

    by_task = itertools.groupby(sorted(shipped_prompts(), key=lambda p: p.task),
                                key=lambda p: p.task)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for _task, prompts in by_task:
            for prompt in itertools.islice(prompts, PROMPTS_PER_TASK):
                fh.write(json.dumps({"prompt": prompt.prompt}) + "\n")


def _show_examples(session: Session, flow) -> None:
    """The first lines of train.jsonl, as a fine-tuning API reads them."""
    from batch_workflows.flows.distillation.dataset import FILES

    say(f"\n== {EXAMPLES} examples from train.jsonl")
    with tempfile.TemporaryDirectory(prefix="bw-demo-") as tmp:
        train = session.artifacts.get_file(flow.dataset_key(PARTITION, FILES["train"]),
                                           Path(tmp) / FILES["train"])
        with open(train, encoding="utf-8") as fh:
            for line in itertools.islice(fh, EXAMPLES):
                messages = json.loads(line)["messages"]
                user = next(m["content"] for m in messages if m["role"] == "user")
                answer = next(m["content"] for m in messages if m["role"] == "assistant")
                say(f"   user: {user[:160]}")
                say(f"   assistant: {answer[:240]}\n")
