"""What a flow's tokens would cost at providers' batch prices (the packaged price table)."""

from __future__ import annotations

from collections.abc import Sequence

from assets.demo.console import say

# Provider models to price the same work at (those found in the price table).
EMBEDDING_MODELS = ("text-embedding-3-small", "text-embedding-3-large", "BAAI/bge-en-icl",
                    "Qwen/Qwen3-Embedding-8B")
CHAT_MODELS = ("meta-llama/Meta-Llama-3.1-8B-Instruct", "meta-llama/Llama-3.3-70B-Instruct",
               "gpt-4o-mini")


def tokens_of(session: object, name: str, keys: Sequence[str]) -> tuple[int, int, list[str]]:
    """Input and output tokens billed for a flow's partitions, and the partitions without
    results yet (named by the caller, so a cost is never silently too low)."""
    from batch_workflows.lifecycle import read_summary

    prompt = completion = 0
    missing = []
    for key in keys:
        try:
            summary = read_summary(session.artifacts, name, key)  # type: ignore[attr-defined]
        except FileNotFoundError:
            missing.append(key)
            continue
        prompt += summary.prompt_tokens
        completion += summary.completion_tokens
    return prompt, completion, missing


def show_cost(what: str, prompt: int, completion: int, missing: Sequence[str],
              models: Sequence[str]) -> None:
    """Print the work's tokens and its price at each reference model's batch rate."""
    from batch_workflows.pricing import PriceTable

    scope = (f" (partitions {', '.join(missing)} have no results yet and are not counted)"
             if missing else "")
    say(f"\n== cost of {what}: {prompt:,} input + {completion:,} output tokens{scope}; "
        "the same batch at a provider's batch price:")
    table = PriceTable.default()
    priced = [m for m in models if table.find(m) is not None]
    for model in priced:
        price = table.find(model)
        usd = table.cost(model, prompt, completion, batch=True)
        say(f"   {model}: ${usd:.6f}  (batch ${price.batch_input}/M in, ${price.batch_output}/M "
            f"out: 50 % of ${price.input_per_million} / ${price.output_per_million}, rounded up "
            "to the cent)")
    if not priced:
        say("   (none of the reference models is in the price table)")
