"""The dataset card: ``card.json`` (every count) and a Hugging Face style ``README.md``.

The README has the YAML header the Hub reads (configs with the two split files, task
categories, size category) and says what is inside: sizes, sources, the teacher and its
sampling, each filter and what it dropped, token statistics (p5 / p50 / p95) and the cost at
the batch price. Every figure comes from `card_data`, which is what ``card.json`` holds.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from batch_workflows.flows.distillation.filters import DROP_REASONS, REFUSAL_PREFIXES
from batch_workflows.flows.distillation.requests import request_settings

FILTER_TEXT = {
    "failed": "the request failed over HTTP after every attempt",
    "errored": "the request never ran (e.g. the batch expired)",
    "missing": "no result came back for the request",
    "finish_length": "the answer was cut at max_tokens (finish_reason `length`)",
    "content_filter": "the provider filtered the answer (finish_reason `content_filter`)",
    "empty": "empty or whitespace-only answer",
    "refusal": "the answer starts with a refusal phrase",
    "over_token_limit": "more completion tokens than the limit",
    "exact_duplicate": "same prompt and same answer (normalised) as an earlier example",
    "near_duplicate": "answer near-identical to an earlier one (MinHash LSH)",
}


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def card_data(report: dict[str, Any], *, partition: str, settings: Any, summary: Any,
              prompts: dict[str, Any], files: dict[str, str]) -> dict[str, Any]:
    """Everything the card says, as JSON-ready data. `report`: DatasetReport.to_dict();
    `summary`: the lifecycle's Summary (None: not known); `prompts`: what the requests step
    recorded (counts, and under "teacher" the model and sampling the requests were built with);
    `settings`: today's (format, filters, split)."""
    cost = summary.cost_usd if summary is not None else None
    kept = report["kept"]
    asked = prompts.get("teacher") or request_settings(settings)
    return {
        "partition": partition,
        "format": settings.format,
        "teacher": {**asked, "answered_by": report["teachers"]},
        "prompts": {k: v for k, v in prompts.items() if k != "teacher"},
        "requests_submitted": summary.submitted if summary is not None else report["requests"],
        **report,
        "filters": {"order": list(DROP_REASONS), "max_answer_tokens": settings.max_answer_tokens,
                    "near_dup_threshold": settings.near_dup_threshold,
                    "near_dup_min_words": settings.near_dup_min_words,
                    "refusal_prefixes": list(REFUSAL_PREFIXES)},
        "validation_fraction": settings.validation_fraction,
        "cost_usd_batch_rate": str(cost) if cost is not None else None,
        "cost_usd_per_kept_example": (str((Decimal(cost) / kept).quantize(Decimal("0.000001")))
                                      if cost is not None and kept else None),
        "lifecycle": ({"counts": summary.counts, "attempts": summary.attempts,
                       "prompt_tokens": summary.prompt_tokens,
                       "completion_tokens": summary.completion_tokens}
                      if summary is not None else None),
        "files": files,
    }


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def readme(card: dict[str, Any]) -> str:
    """The README.md of the dataset, in the Hugging Face dataset card style."""
    splits, tokens, teacher = card["splits"], card["tokens"], card["teacher"]
    header = "\n".join([
        "---", "configs:", "- config_name: default", "  data_files:",
        "  - split: train", "    path: train.jsonl", "  - split: validation",
        "    path: validation.jsonl", "task_categories:", "- text-generation",
        "size_categories:", f"- {_size_category(card['kept'])}", "tags:",
        "- synthetic", "- distillation", "- batch-workflows", "---",
    ])
    filters = [(r, FILTER_TEXT[r], card["dropped"].get(r, 0)) for r in DROP_REASONS]
    token_rows = [(k, v["p5"], v["p50"], v["p95"], v["mean"], v["total"])
                  for k, v in tokens.items()]
    cost = card["cost_usd_batch_rate"]
    sampling = ", ".join(f"{k}={v}" for k, v in teacher["sampling"].items())
    parts = [
        header,
        f"# Distillation dataset `{card['partition']}`",
        f"Supervised fine-tuning examples written by the teacher model `{teacher['model']}` "
        "through a Batch API, with batch-workflows. Format: "
        + ("chat `messages` (system?, user, assistant) per line."
           if card["format"] == "messages" else "`prompt` / `completion` strings per line."),
        "## Sizes",
        _table([("train", splits["train"]), ("validation", splits["validation"]),
                ("total", card["kept"])], ("split", "examples")),
        f"{card['requests_submitted']} requests submitted; {card['kept']} kept, "
        f"{card['dropped_total']} dropped (kept + dropped = requests submitted: "
        f"{'yes' if card['adds_up'] else 'NO'}). The split is by a hash of the prompt: a prompt "
        f"and all its samples are in one split (validation fraction "
        f"{card['validation_fraction']}).",
        "## Sources",
        _table(sorted(card["sources"].items()), ("source", "examples")),
        _table(sorted(card["tasks"].items()), ("task", "examples")),
        f"Prompts read: {card['prompts'].get('prompts', '?')}; repeated prompts not sent: "
        f"{card['prompts'].get('repeated_prompts_not_sent', 0)}.",
        "## Teacher",
        f"`{teacher['model']}` ({sampling}); answered by: "
        + ", ".join(f"`{m}` ({n})" for m, n in teacher["answered_by"].items()) + ".",
        "## Filters",
        "Each request is kept or dropped for the first reason that applies, in this order:",
        _table(filters, ("reason", "meaning", "dropped")),
        f"Token limit: {card['filters']['max_answer_tokens']} completion tokens. Near "
        f"duplicates: MinHash (datasketch's sketch) over word 3-grams, Jaccard threshold "
        f"{card['filters']['near_dup_threshold']}, answers of at least "
        f"{card['filters']['near_dup_min_words']} words. Refusal phrases (at the start of the "
        "answer): " + "; ".join(f"\"{p}\"" for p in card["filters"]["refusal_prefixes"]) + ".",
        "## Token statistics (kept examples)",
        _table(token_rows, ("tokens", "p5", "p50", "p95", "mean", "total")),
        "## Cost",
        (f"${cost} at the batch price (every attempt billed), "
         f"${card['cost_usd_per_kept_example']} per kept example."
         if cost is not None else "Unknown: the teacher model has no price in the price table."),
        "## Files",
        _table(sorted(card["files"].items()), ("file", "what")),
    ]
    return "\n\n".join(parts) + "\n"
