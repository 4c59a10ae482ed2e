"""The ``llm`` strategy's two hooks: the chat request for an item (`chat_request`, with the policy
prompt and a ``response_format`` json_schema) and the strict reading of its answer
(`parse_answer`).

The policy prompt states the output format first, then the instructions, the categories with
their definitions and examples and what the policy allows, and the format again after the
content (small models follow what they read last). The answer is parsed strictly: anything that
is not exactly the schema's object — not JSON, cut off by max_tokens, a missing or extra field,
a category the policy does not have, ``flagged`` disagreeing with ``categories`` — is
``unparsed`` with the reason, never repaired or guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from batch_workflows.flows.moderation.taxonomy import Policy
from batch_workflows.profiles import CHAT, rejects_sampling

SCHEMA_NAME = "moderation_verdict"
FIELDS = ("flagged", "categories", "rationale")
DEFAULT_MAX_TOKENS = 160
DEFAULT_PROMPT_EXAMPLES = 2  # examples per category in the prompt (prompt tokens are paid per item)
OK, UNPARSED = "ok", "unparsed"


def verdict_schema(policy: Policy) -> dict[str, Any]:
    """The JSON Schema of an answer: ``flagged``, ``categories`` (an enum list), ``rationale``."""
    return {
        "type": "object",
        "properties": {
            "flagged": {"type": "boolean"},
            # No more entries than categories: a small model that repeats names still closes the
            # list and finishes inside max_tokens. (uniqueItems would say it better, but strict
            # structured outputs and xgrammar do not take it.)
            "categories": {"type": "array", "items": {"type": "string", "enum": policy.names},
                           "maxItems": len(policy.names)},
            "rationale": {"type": "string"},
        },
        "required": list(FIELDS),
        "additionalProperties": False,
    }


def response_format(policy: Policy) -> dict[str, Any]:
    return {"type": "json_schema",
            "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": verdict_schema(policy)}}


def output_format(policy: Policy) -> str:
    return (
        "Answer with one JSON object and nothing else: "
        '{"flagged": true or false, "categories": [the names of the categories the content '
        'violates, [] if none], "rationale": "one short sentence"}. '
        f"Category names: {', '.join(policy.names)}. "
        '"flagged" is true exactly when "categories" is not empty.'
    )


def policy_prompt(policy: Policy, examples_per_category: int = DEFAULT_PROMPT_EXAMPLES) -> str:
    """The system message: format, instructions, categories with definitions and examples."""
    lines = [output_format(policy), "",
             f"You are a content moderator applying the policy {policy.name!r}.",
             policy.description or "Flag content that violates one of the categories below.",
             "Judge the content itself, not the topic: discussing, reporting, quoting or asking "
             "for help about a harm is not the harm.", "", "Categories:"]
    for c in policy.categories:
        lines.append(f"- {c.name}: {c.description}")
        for example in c.examples[:examples_per_category]:
            lines.append(f"  example: {example}")
    if policy.allowed_examples:
        lines += ["", "Allowed (flag none of these):"]
        lines += [f"- {e}" for e in policy.allowed_examples]
    lines += ["", output_format(policy)]
    return "\n".join(lines)


def user_message(text: str, policy: Policy) -> str:
    return f"Content to review:\n<content>\n{text}\n</content>\n\n{output_format(policy)}"


def chat_request(custom_id: str, text: str, policy: Policy, model: str, *, system: str,
                 max_tokens: int = DEFAULT_MAX_TOKENS) -> dict[str, Any]:
    """One /v1/chat/completions batch line (`system`: ``policy_prompt(policy)``, built once).

    Greedy decoding (temperature 0) for a repeatable verdict, where the model takes a
    temperature: Claude models from 4.7 on refuse any (``rejects_sampling``)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "system", "content": system},
                     {"role": "user", "content": user_message(text, policy)}],
        "response_format": response_format(policy),
        "temperature": 0,
        "max_tokens": max_tokens,
    }
    if rejects_sampling(model):
        del body["temperature"]
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


@dataclass(frozen=True)
class Answer:
    """A judge's answer, read strictly: ``ok`` with its fields, or ``unparsed`` with the reason."""

    status: str
    flagged: bool | None = None
    categories: tuple[str, ...] | None = None
    rationale: str | None = None
    reason: str | None = None


def parse_answer(content: str | None, finish_reason: str | None, names: frozenset[str]) -> Answer:
    """Read `content` as the verdict object; `names` are the policy's category names."""
    if finish_reason == "length":
        return Answer(UNPARSED, reason="cut off at max_tokens")
    if not content or not content.strip():
        return Answer(UNPARSED, reason="empty answer")
    try:
        obj = orjson.loads(content)
    except orjson.JSONDecodeError:
        return Answer(UNPARSED, reason="not JSON")
    if not isinstance(obj, dict):
        return Answer(UNPARSED, reason="not a JSON object")
    if set(obj) != set(FIELDS):
        return Answer(UNPARSED, reason=f"fields {sorted(obj)}, expected {list(FIELDS)}")
    flagged, categories, rationale = obj["flagged"], obj["categories"], obj["rationale"]
    if not isinstance(flagged, bool):
        return Answer(UNPARSED, reason="flagged is not a boolean")
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        return Answer(UNPARSED, reason="categories is not a list of strings")
    unknown = [c for c in categories if c not in names]
    if unknown:
        return Answer(UNPARSED, reason=f"unknown categories {unknown[:3]}")
    if not isinstance(rationale, str):
        return Answer(UNPARSED, reason="rationale is not a string")
    if flagged != bool(categories):
        return Answer(UNPARSED, reason="flagged disagrees with categories")
    return Answer(OK, flagged, tuple(dict.fromkeys(categories)), rationale)
