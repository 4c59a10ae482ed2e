"""The moderation policy: its categories (name, definition, examples, baseline keywords) and the
examples of content it allows, read from a YAML or JSON file.

The default is OpenAI's moderation taxonomy (`OPENAI_CATEGORIES`), shipped as
``batch_workflows/data/moderation/policy.yaml``; ``MODERATION_POLICY`` points at a file of your
own with the same fields::

    name: my-policy
    description: what the policy is for (goes into the judge's instructions)
    allowed_examples: [content that must not be flagged, ...]      # optional
    categories:
      - name: spam
        description: unsolicited advertising ...
        examples: [an example of the category, ...]             # the embedding strategy's anchors
        keywords: [a word of the keyword baseline, ...]         # optional

`Policy.version` is a digest of everything that changes what a judge is asked, so requests,
verdicts and calibrated thresholds can name the exact policy they used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from batch_workflows.errors import ConfigurationError

DEFAULT_POLICY_FILE = Path(__file__).resolve().parents[2] / "data" / "moderation" / "policy.yaml"

# OpenAI's moderation categories (omni-moderation), in the order its API lists them.
OPENAI_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/intent", "self-harm/instructions", "sexual",
    "sexual/minors", "violence", "violence/graphic",
)  # fmt: skip


@dataclass(frozen=True)
class Category:
    """One category of a policy."""

    name: str
    description: str
    examples: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    """A moderation policy: what to flag (the categories) and what not to (allowed examples)."""

    name: str
    description: str
    categories: tuple[Category, ...]
    allowed_examples: tuple[str, ...] = ()
    source: str = ""  # the file it was read from

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.categories]

    @property
    def version(self) -> str:
        """A digest of what a judge is asked (not of the file's formatting, nor of the
        baseline's keywords): 16 hex digits."""
        content = {"name": self.name, "description": self.description,
                   "allowed_examples": list(self.allowed_examples),
                   "categories": [[c.name, c.description, list(c.examples)]
                                  for c in self.categories]}
        return hashlib.sha256(orjson.dumps(content)).hexdigest()[:16]


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy in a YAML (.yaml, .yml) or JSON (.json) file; None: the shipped default."""
    path = Path(path) if path else DEFAULT_POLICY_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"moderation policy {path}: cannot read it ({exc})") from None
    data = _parse(path, text)
    return policy_from_dict(data, source=str(path))


def _parse(path: Path, text: str) -> Any:
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"moderation policy {path}: not valid JSON ({exc})") from None
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"moderation policy {path}: not valid YAML ({exc})") from None
    raise ConfigurationError(f"moderation policy {path}: expected a .yaml, .yml or .json file")


def policy_from_dict(data: Any, source: str = "") -> Policy:
    """A Policy from the parsed file; ConfigurationError names the first field that is wrong."""
    where = f"moderation policy {source or '(dict)'}"
    if not isinstance(data, dict):
        raise ConfigurationError(f"{where}: expected a mapping with name and categories")
    raw = data.get("categories")
    if not isinstance(raw, list) or not raw:
        raise ConfigurationError(f"{where}: 'categories' must be a non-empty list")
    categories = tuple(_category(c, f"{where}: categories[{i}]") for i, c in enumerate(raw))
    seen: set[str] = set()
    for c in categories:
        if c.name in seen:
            raise ConfigurationError(f"{where}: category {c.name!r} is listed twice")
        seen.add(c.name)
    return Policy(
        name=_text(data, "name", where),
        description=str(data.get("description") or "").strip(),
        categories=categories,
        allowed_examples=_texts(data.get("allowed_examples"), f"{where}: allowed_examples"),
        source=source,
    )


def _category(raw: Any, where: str) -> Category:
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: expected a mapping with name and description")
    return Category(
        name=_text(raw, "name", where),
        description=_text(raw, "description", where),
        examples=_texts(raw.get("examples"), f"{where}: examples"),
        keywords=_texts(raw.get("keywords"), f"{where}: keywords"),
    )


def _text(raw: dict, key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{where}: {key!r} must be a non-empty string")
    return value.strip()


def _texts(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigurationError(f"{where}: expected a list of non-empty strings")
    return tuple(v.strip() for v in value)
