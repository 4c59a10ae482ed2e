"""Extract CreateChatCompletionRequest (and every schema it refers to) from OpenAI's OpenAPI spec.

    python tests/data/make_chat_request_schema.py /path/to/openai-openapi/openapi.json REF

Writes tests/data/openai-chat-request-schema.json: OpenAPI components become JSON Schema 2020-12
$defs, `nullable: true` becomes a union with null, descriptions/examples/x-* keys are dropped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT_NAME = "CreateChatCompletionRequest"
OUT = Path(__file__).with_name("openai-chat-request-schema.json")
DROP = {"description", "example", "examples", "title", "deprecated", "discriminator"}


def convert(node: Any, refs: set[str]) -> Any:
    if isinstance(node, list):
        return [convert(n, refs) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in DROP or key.startswith("x-") or key == "nullable":
            continue
        if key == "$ref":
            name = value.rsplit("/", 1)[-1]
            refs.add(name)
            out[key] = f"#/$defs/{name}"
        elif key in ("properties", "$defs", "patternProperties"):
            out[key] = {k: convert(v, refs) for k, v in value.items()}
        else:
            out[key] = convert(value, refs)
    if node.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def main(spec_path: str, ref: str) -> None:
    schemas = json.loads(Path(spec_path).read_text())["components"]["schemas"]
    defs: dict[str, Any] = {}
    todo = [ROOT_NAME]
    while todo:
        name = todo.pop()
        if name in defs:
            continue
        refs: set[str] = set()
        defs[name] = convert(schemas[name], refs)
        todo.extend(sorted(refs - set(defs)))
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:batch-workflows:openai-chat-request-schema",
        "title": f"OpenAI {ROOT_NAME} and the schemas it refers to (extracted)",
        "x-source": {
            "repository": "https://github.com/openai/openai-openapi",
            "license": "MIT (c) OpenAI",
            "spec": {"path": "openapi.json", "ref": ref},
            "generator": "tests/data/make_chat_request_schema.py",
        },
        "x-conversion": [
            "#/components/schemas/X -> #/$defs/X",
            "OpenAPI nullable:true -> type union with null (anyOf wrapper when no type)",
            "description, example(s), title, deprecated, discriminator and x-* keys dropped",
        ],
        "$ref": f"#/$defs/{ROOT_NAME}",
        "$defs": dict(sorted(defs.items())),
    }
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    print(f"wrote {OUT} ({len(defs)} schemas)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
