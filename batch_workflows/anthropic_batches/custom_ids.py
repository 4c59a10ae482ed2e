"""Custom ids Anthropic accepts, mapped reversibly from ours.

Anthropic takes ``^[a-zA-Z0-9_-]{1,64}$``; a flow's ids may be longer or use other characters
(``ticket/2025-06-01#3``). Such an id is sent as a digest of itself, never truncated, and the
map from what was sent back to the original travels with the batch's intent record, so results
join on the original id.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

ALLOWED = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_PREFIX = "bwid-"


def sent_ids(custom_ids: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """The id to send for each of `custom_ids` (in order) and the map sent → original of those
    that had to change. Unique within the batch: a digest that meets another id is salted."""
    ids = list(custom_ids)
    taken = {cid for cid in ids if ALLOWED.match(cid)}
    out, back = [], {}
    for cid in ids:
        if ALLOWED.match(cid):
            out.append(cid)
            continue
        salt = 0
        while True:
            sent = _digest(cid, salt)
            if sent not in taken:
                break
            salt += 1
        taken.add(sent)
        back[sent] = cid
        out.append(sent)
    return out, back


def _digest(custom_id: str, salt: int) -> str:
    h = hashlib.sha256(f"{salt}:{custom_id}".encode()).hexdigest()
    return _PREFIX + h[:48]  # 53 characters, 192 bits: collisions are the salt's job only
