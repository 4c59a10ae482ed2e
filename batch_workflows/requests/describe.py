"""How a problem's reason shows a JSON value: quoted and cut short, or by its JSON type."""

from __future__ import annotations

_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    type(None): "null",
}


def quote(value: object) -> str:
    """`value` in double quotes, at most 60 characters of it."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return '"' + text.replace('"', '\\"') + '"'


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type ("object", "array", ...)."""
    return _JSON_TYPES.get(type(value), type(value).__name__)
