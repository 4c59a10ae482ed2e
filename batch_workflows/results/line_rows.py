"""The slow reader: result and request lines one at a time with orjson, for the blocks that
Arrow's reader refuses (`arrow_rows.py`). Same rules, and it names the file, 1-based line and
field of anything it cannot read.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from batch_workflows.errors import CorruptResultError, InvalidInputError, Problem
from batch_workflows.requests.lines import BOM
from batch_workflows.results.schema import REQUEST_ROW_SCHEMA, RESULT_ROW_SCHEMA

# What reading a malformed result line raises, and nothing else: not JSON (JSONDecodeError), a
# key that is missing (KeyError), a value of the wrong type where an object or a list was
# expected (TypeError on a subscript, AttributeError on `.get`), our own ValueErrors, bad base64
# or a base64 vector of a length that is no float32 array (ValueError). Anything else, such as
# a MemoryError or a bug, propagates.
_MALFORMED = (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError)


def request_rows(path: str, lines: Iterable[tuple[int, bytes]]) -> pa.RecordBatch:
    """Numbered request lines -> `REQUEST_ROW_SCHEMA`; InvalidInputError names a bad line."""
    return _to_batch([_request_row(path, no, line) for no, line in lines], REQUEST_ROW_SCHEMA, path)


def result_rows(path: str, lines: Iterable[tuple[int, bytes]]) -> pa.RecordBatch:
    """Numbered result lines -> `RESULT_ROW_SCHEMA`; CorruptResultError names a bad line."""
    return _to_batch([_result_row(path, no, line) for no, line in lines], RESULT_ROW_SCHEMA, path)


def _request_row(path: str, no: int, line: bytes) -> tuple[str, Any]:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as err:
        raise InvalidInputError([Problem(path, no, None, f"not valid JSON: {err}")]) from None
    if not isinstance(obj, dict):
        raise InvalidInputError([Problem(path, no, None, "not a JSON object")])
    cid = obj.get("custom_id")
    if type(cid) is not str or not cid:
        raise InvalidInputError([Problem(path, no, "custom_id", "missing or not a non-empty string")])
    body = obj.get("body")
    return cid, body.get("model") if isinstance(body, dict) else None


def _result_row(path: str, no: int, line: bytes) -> tuple:
    try:
        return _parse_result(orjson.loads(line))
    except _MALFORMED as exc:
        raise CorruptResultError(_result_problem(path, no, line, exc)) from None


def _result_problem(path: str, no: int, line: bytes, exc: Exception) -> Problem:
    """The precise reason a result line could not be read."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as err:
        return Problem(path, no, None, f"not valid JSON: {err}")
    if not isinstance(obj, dict):
        return Problem(path, no, None, "not a JSON object")
    if not isinstance(obj.get("custom_id"), str) or not obj["custom_id"]:
        return Problem(path, no, "custom_id", "missing or not a non-empty string")
    response, error = obj.get("response"), obj.get("error")
    if response is None and error is None:
        return Problem(path, no, None, "neither `response` nor `error` is set")
    if response is not None:
        if not isinstance(response, dict):
            return Problem(path, no, "response", "not an object")
        if type(response.get("status_code")) is not int:
            return Problem(path, no, "response.status_code", "missing or not an integer")
        return Problem(path, no, "response.body", f"unexpected shape ({type(exc).__name__}: {exc})")
    if not isinstance(error, dict):
        return Problem(path, no, "error", "not an object")
    return Problem(path, no, "error", f"unexpected shape ({type(exc).__name__}: {exc})")


def _parse_result(obj: dict) -> tuple:
    """One result line (parsed) -> a row of `RESULT_ROW_SCHEMA`; the fast reader's rules."""
    cid = obj["custom_id"]
    if type(cid) is not str or not cid:
        raise ValueError("custom_id is not a non-empty string")
    response = obj.get("response")
    top = obj.get("error")
    if response is None:
        return (cid, 2, None, top.get("code"), top.get("message"),
                None, None, None, None, None, None, None, None)  # fmt: skip
    code = response["status_code"]
    if type(code) is not int:
        raise ValueError("status_code is not an integer")
    body = response.get("body")
    if body is None:
        body = {}
    if code != 200:
        err = body.get("error") or {}
        if isinstance(err, str):  # some servers send the message alone
            err = {"message": err}
        ecode = _first(err.get("code"), err.get("type"))
        emsg = err.get("message")
        if isinstance(top, dict):  # some providers put the reason at the top level
            ecode, emsg = _first(ecode, top.get("code")), _first(emsg, top.get("message"))
        return (cid, 1, code, ecode, emsg, body.get("model"),
                None, None, None, None, None, None, None)  # fmt: skip
    usage = body.get("usage")
    if usage is not None:
        prompt, total = usage.get("prompt_tokens"), usage.get("total_tokens")
        completion = _first(usage.get("completion_tokens"), 0)  # embeddings: zero produced
    else:
        prompt = completion = total = None
    content = finish = embedding = embeddings = None
    choices = body.get("choices")
    if choices:
        choice = choices[0]
        message = choice.get("message")
        content = _first(message.get("content") if message else None, choice.get("text"))
        finish = choice.get("finish_reason")
    data = body.get("data")
    if data:
        if len(data) == 1:
            embedding = _vector(data[0]["embedding"])
        else:
            data = sorted(data, key=lambda d: d.get("index") or 0)
            embeddings = [_vector(d["embedding"]) for d in data]
    return (cid, 0, 200, None, None, body.get("model"), content, finish,
            embedding, embeddings, prompt, completion, total)  # fmt: skip


def _first(*values: Any) -> Any:
    """The first value that is not None (JSON null)."""
    for value in values:
        if value is not None:
            return value
    return None


def _vector(value: Any) -> Any:
    """A float list as sent, or a base64 `encoding_format` string decoded to float32."""
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4")
    return value


def _to_batch(rows: list[tuple], schema: pa.Schema, source: str) -> pa.RecordBatch:
    """Rows from the line-by-line readers -> a record batch (odd JSON types coerced)."""
    if not rows:
        return pa.RecordBatch.from_pylist([], schema=schema)
    arrays = []
    for values, f in zip(zip(*rows, strict=True), schema, strict=True):
        try:
            arrays.append(pa.array(values, type=f.type))
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            arrays.append(_coerce(values, f, rows, source))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _coerce(values: tuple, f: pa.Field, rows: list[tuple], source: str) -> pa.Array:
    if pa.types.is_string(f.type):
        fixed = [v if v is None or isinstance(v, str) else orjson.dumps(v).decode() for v in values]
    elif pa.types.is_integer(f.type):
        fixed = [v if type(v) is int else _int_or_none(v) for v in values]
    else:  # vectors: a non-number inside is a corrupt line; find which one
        for value, row in zip(values, rows, strict=True):
            try:
                pa.array([value], type=f.type)
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                no = _find_line(source, row[0])
                raise CorruptResultError(
                    Problem(source, no, "response.body.data.embedding", "not a list of numbers")
                ) from None
        fixed = list(values)
    return pa.array(fixed, type=f.type)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _find_line(path: str, custom_id: str) -> int:
    """1-based line of a custom_id in a result file (slow path for error messages only)."""
    with open(path, "rb") as f:
        for no, line in enumerate(f, 1):
            if custom_id.encode() in line:
                try:
                    if orjson.loads(line.removeprefix(BOM)).get("custom_id") == custom_id:
                        return no
                except (orjson.JSONDecodeError, AttributeError):
                    continue
    return 0
