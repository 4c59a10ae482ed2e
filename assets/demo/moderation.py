"""The demo's moderation part: one labelled day of the shipped backlog → verdicts and figures."""

from __future__ import annotations

import shutil
from pathlib import Path

from assets.demo.console import say
from assets.demo.cost import CHAT_MODELS, EMBEDDING_MODELS, show_cost, tokens_of
from assets.demo.session import Session

DAY = "2025-03-07"  # a day of the shipped labelled sample


def run(session: Session) -> bool:
    """Put the sample day in the inbox (when it has none), materialize that day, show figures."""
    from assets.flows import load_flow
    from batch_workflows.flows.moderation.evaluate import SAMPLE_BACKLOG
    from batch_workflows.s3 import is_s3

    flow = load_flow("moderation")  # assets/defs/moderation/defs.yaml, the environment now
    settings = flow.settings
    if is_s3(settings.watch_uri):
        say(f"inbox: {settings.watch_uri} (S3): the day's file is read from there")
    else:
        inbox = Path(settings.watch_uri)
        if not any(inbox.glob(f"{DAY}.*")):
            inbox.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SAMPLE_BACKLOG / f"{DAY}.jsonl", inbox / f"{DAY}.jsonl")
        say(f"inbox: {inbox / (DAY + '.jsonl')} (a day of the shipped labelled sample)")
    say(f"strategy: {settings.strategy} (model {settings.model}); MODERATION_STRATEGY=llm "
        "asks the chat model instead")
    selection = [*flow.lifecycle.assets, flow.verdicts, *flow.lifecycle.checks, flow.accuracy]
    say(f"\n-- day {DAY}")
    run = session.materialize(selection, DAY)
    verdicts = run.metadata(flow.verdicts.key.to_user_string())
    if verdicts is None:
        return False
    say("\n== moderation outputs")
    say(f"verdicts: {verdicts['path']} (flagged.parquet beside it)")
    say(f"{verdicts['items']} items: {verdicts['flagged']} flagged "
        f"({verdicts['flagged_rate']:.1%}), {verdicts['unparsed']} unparsed, "
        f"{verdicts['failed']} failed")
    if "f1" in verdicts:
        say(f"against the day's labels: precision {verdicts['precision']:.3f}, recall "
            f"{verdicts['recall']:.3f}, F1 {verdicts['f1']:.3f}, false-positive rate "
            f"{verdicts['fpr']:.3f} (keyword baseline F1 "
            f"{verdicts.get('keyword_baseline_f1', float('nan')):.3f})")
    prompt, completion, missing = tokens_of(session, flow.name, [DAY])
    show_cost(f"the day's review ({settings.strategy})", prompt, completion, missing,
              EMBEDDING_MODELS if settings.strategy == "embedding" else CHAT_MODELS)
    return run.result.success
