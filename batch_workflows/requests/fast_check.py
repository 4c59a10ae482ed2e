"""The fast check: says yes, cheaply, to a request line that is completely fine.

A line that is fine is parsed once with orjson and checked with a handful of dict lookups and
type tests. The fast check only ever accepts what the validator's full check accepts; anything
else (including everything it is unsure of) goes to the full check, which alone decides what
the problems are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batch_workflows.profiles import CHAT, EMBEDDINGS, ProviderProfile
from batch_workflows.requests.body_rules import CHAT_ROLES

FastCheck = Callable[[Any], str | None]  # parsed line -> its custom_id, or None: check fully


def _never(obj: Any) -> None:
    return None


def build_fast_check(profile: ProviderProfile, endpoint: str | None,
                     model: str | None) -> FastCheck:
    """The fast check for a file whose endpoint and model are known (until then: never yes).

    It returns the custom_id when `obj` is a fully valid request, else None. A closure over
    constants, with subscripts rather than .get(): a missing key is an exception that costs
    nothing where every key is there. This is the per-line cost that counts.
    """
    if endpoint is None or model is None:
        return _never  # the first lines go through the full check, which sets them
    if profile.api == "anthropic":
        return _never  # every body is translated (and refused by name) in the full check
    one_model = profile.one_model_per_file
    kind = 1 if endpoint == CHAT else 2 if endpoint == EMBEDDINGS else 0
    roles = CHAT_ROLES

    def fast(obj: Any) -> str | None:
        if type(obj) is not dict:
            return None
        try:
            cid = obj["custom_id"]
            body = obj["body"]
            if (
                type(cid) is not str
                or not cid
                or obj["method"] != "POST"
                or obj["url"] != endpoint
            ):
                return None
            m = body["model"]  # TypeError unless body is a mapping
            if type(m) is not str or (m != model if one_model else not m):
                return None
            if kind == 1:
                messages = body["messages"]
                if type(messages) is not list or not messages:
                    return None
                for msg in messages:
                    if type(msg["content"]) is not str:  # TypeError unless a mapping
                        return None
                    role = msg["role"]
                    # equality with the common roles is cheaper than hashing a fresh string
                    if role != "user" and role != "system" and role not in roles:
                        return None
            elif kind == 2:
                inp = body["input"]
                if type(inp) is str:
                    if not inp:
                        return None
                elif type(inp) is list and inp:
                    for x in inp:
                        if type(x) is not str or not x:
                            return None
                else:
                    return None
        except (KeyError, TypeError):
            return None
        return cid

    return fast
