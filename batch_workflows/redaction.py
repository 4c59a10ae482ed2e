"""Keep a secret (an API key) out of text we pass on: error messages, excerpts, logs."""

from __future__ import annotations


def redact(text: str, secret: str | None) -> str:
    """`text` with every occurrence of `secret` replaced by "***"."""
    if secret and text:
        return text.replace(secret, "***")
    return text


def excerpt(text: str, secret: str | None, limit: int) -> str:
    """Whitespace collapsed, the secret redacted, then cut to `limit` characters.

    Redacting before cutting matters: a cut through the secret would leave a prefix of it
    that no longer matches and so would survive redaction."""
    return redact(" ".join(text.split()), secret)[:limit]
