"""A request template: the body of one request per source row, with ``{column}`` placeholders.

Chat (``/v1/chat/completions``): `messages` whose ``content`` strings may name columns; the
body adds ``model``, `body`'s parameters and `response_format` as written. Embeddings
(``/v1/embeddings``): `input`, one string naming columns. A placeholder is ``{name}`` where
``name`` is an identifier; any other brace (a JSON example in a prompt) is text. ``{{ … }}`` is
not available: Dagster renders it when the YAML loads.

Everything that can be checked without data is checked when the template is made (unknown
endpoint, no messages, a response format without a schema); the columns are checked against
each file's, and each row's values, before anything is uploaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from batch_workflows.errors import ConfigurationError
from batch_workflows.profiles import CHAT, EMBEDDINGS

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
ROLES = ("system", "developer", "user", "assistant")
# Body fields the template writes itself: set through `model`, `messages`, `input` and
# `response_format`, never through `body`.
OWN_FIELDS = ("model", "messages", "input", "response_format")


@dataclass(frozen=True)
class RequestTemplate:
    """What one source row becomes: a request body for `endpoint`."""

    endpoint: str
    model: str
    messages: Sequence[Mapping[str, str]] = ()
    input: str | None = None
    body: Mapping[str, Any] = field(default_factory=dict)
    response_format: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.endpoint not in (CHAT, EMBEDDINGS):
            raise ConfigurationError(
                f"endpoint {self.endpoint!r}: expected {CHAT} or {EMBEDDINGS}")
        if not self.model:
            raise ConfigurationError("model: a model name is required")
        taken = sorted(set(self.body) & set(OWN_FIELDS))
        if taken:
            raise ConfigurationError(
                f"request.body: {', '.join(taken)} set outside body (model, messages, input, "
                "response_format are attributes of their own)")
        if self.endpoint == CHAT:
            self._check_chat()
        elif not self.input:
            raise ConfigurationError(f"request.input: {EMBEDDINGS} needs the text to embed, "
                                     "e.g. \"{title} {description}\"")
        elif self.messages or self.response_format:
            raise ConfigurationError(f"request: {EMBEDDINGS} takes input, not messages or "
                                     "response_format")

    def _check_chat(self) -> None:
        if not self.messages:
            raise ConfigurationError(f"request.messages: {CHAT} needs at least one message")
        if self.input:
            raise ConfigurationError(f"request.input: {CHAT} takes messages, not input")
        for i, message in enumerate(self.messages):
            where = f"request.messages[{i}]"
            if set(message) != {"role", "content"}:
                raise ConfigurationError(f"{where}: expected the keys role and content, got "
                                         f"{sorted(message)}")
            if message["role"] not in ROLES:
                raise ConfigurationError(f"{where}.role: {message['role']!r} is not one of "
                                         f"{', '.join(ROLES)}")
            if not isinstance(message["content"], str) or not message["content"]:
                raise ConfigurationError(f"{where}.content: expected text")
        if self.response_format is not None:
            self.answer_schema()  # checks it

    # -- what it needs --------------------------------------------------------------------------
    @property
    def texts(self) -> list[tuple[str, str]]:
        """(where, text) of every string that may hold placeholders."""
        if self.endpoint == EMBEDDINGS:
            return [("request.input", self.input or "")]
        return [(f"request.messages[{i}].content", m["content"])
                for i, m in enumerate(self.messages)]

    @property
    def columns(self) -> list[str]:
        """The columns the placeholders name, in order of first use."""
        found = (name for _, text in self.texts for name in PLACEHOLDER.findall(text))
        return list(dict.fromkeys(found))

    def answer_schema(self) -> dict[str, Any] | None:
        """The JSON Schema of a ``json_schema`` response format (its object's properties are
        the answer's fields); None without one. ConfigurationError when it is malformed."""
        fmt = self.response_format
        if fmt is None or fmt.get("type") in ("text", "json_object"):
            return None
        if fmt.get("type") != "json_schema":
            raise ConfigurationError(f"request.response_format.type {fmt.get('type')!r}: "
                                     "expected json_schema, json_object or text")
        spec = fmt.get("json_schema")
        if not isinstance(spec, Mapping) or not spec.get("name"):
            raise ConfigurationError("request.response_format.json_schema: needs a name and "
                                     "a schema")
        schema = spec.get("schema")
        if not isinstance(schema, Mapping) or schema.get("type") != "object" or not isinstance(
                schema.get("properties"), Mapping) or not schema["properties"]:
            raise ConfigurationError("request.response_format.json_schema.schema: expected an "
                                     "object schema with properties")
        for name, prop in schema["properties"].items():
            if not isinstance(prop, Mapping):
                raise ConfigurationError(f"request.response_format.json_schema.schema."
                                         f"properties.{name}: expected a schema object")
        missing = sorted(set(schema.get("required", ())) - set(schema["properties"]))
        if missing:
            raise ConfigurationError(f"request.response_format.json_schema.schema.required: "
                                     f"{', '.join(missing)} not among the properties")
        return dict(schema)

    # -- one row ----------------------------------------------------------------------------------
    def render(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The body for one row (`values` holds every placeholder's column, checked non-null)."""
        def fill(text: str) -> str:
            return PLACEHOLDER.sub(lambda m: _text(values[m.group(1)]), text)

        if self.endpoint == EMBEDDINGS:
            return {"model": self.model, "input": fill(self.input or ""), **self.body}
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m["role"], "content": fill(m["content"])}
                         for m in self.messages],
            **self.body,
        }
        if self.response_format is not None:
            body["response_format"] = dict(self.response_format)
        return body


def _text(value: Any) -> str:
    """A value as it appears in a prompt: text as is, anything else as its JSON-ish str."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
