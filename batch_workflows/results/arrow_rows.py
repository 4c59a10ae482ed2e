"""The fast reader: blocks of plain result and request lines, parsed by Arrow's JSON reader,
turned into rows with Arrow kernels.

Arrow's reader (C++, multi-threaded) parses a block against an explicit schema of the fields we
keep. A block that does not fit that plain shape (a base64 embedding, an unusual type,
embeddings out of index order, an empty `choices` list, ...) gets None here and goes to the
line-by-line reader (`line_rows.py`), which applies the same rules and names anything
unreadable.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch_workflows.results.schema import REQUEST_ROW_SCHEMA, RESULT_ROW_SCHEMA, SCHEMA

_USAGE = pa.struct(
    [("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64()), ("total_tokens", pa.int64())]
)
_ERROR = pa.struct([("code", pa.string()), ("message", pa.string()), ("type", pa.string())])
_CHOICE = pa.struct(
    [
        ("message", pa.struct([("content", pa.string())])),
        ("text", pa.string()),
        ("finish_reason", pa.string()),
    ]
)
_DATUM = pa.struct([("index", pa.int64()), ("embedding", pa.list_(pa.float32()))])
_BODY = pa.struct(
    [
        ("model", pa.string()),
        ("usage", _USAGE),
        ("error", _ERROR),
        ("choices", pa.list_(_CHOICE)),
        ("data", pa.list_(_DATUM)),
    ]
)
# The fields of a result line that Arrow's reader keeps (any others are ignored).
RESULT_LINE_SCHEMA = pa.schema(
    [
        ("custom_id", pa.string()),
        ("response", pa.struct([("status_code", pa.int64()), ("body", _BODY)])),
        ("error", _ERROR),
    ]
)
# The fields of a request line that Arrow's reader keeps.
REQUEST_LINE_SCHEMA = pa.schema(
    [("custom_id", pa.string()), ("body", pa.struct([("model", pa.string())]))]
)


def request_rows(table: pa.Table) -> list[pa.RecordBatch] | None:
    """Arrow-parsed request lines -> `REQUEST_ROW_SCHEMA`; None when a line needs the slow reader."""
    ids = table.column("custom_id")
    if ids.null_count or pc.any(pc.equal(pc.utf8_length(ids), 0)).as_py():
        return None
    model = pc.struct_field(table.column("body"), "model")
    return pa.Table.from_arrays([ids, model], schema=REQUEST_ROW_SCHEMA).to_batches()


def result_rows(table: pa.Table) -> list[pa.RecordBatch] | None:
    """Arrow-parsed result lines -> `RESULT_ROW_SCHEMA`; None when a line needs the slow reader."""
    try:  # one batch per block: the kernels cost per call more than per row here
        batches = [_result_columns(b) for b in table.combine_chunks().to_batches()]
    except pa.ArrowException:  # e.g. an empty `choices` list
        return None
    if any(b is None for b in batches):
        return None
    return batches  # type: ignore[return-value]


def _field(array: pa.Array, *names: str) -> pa.Array:
    for name in names:
        array = pc.struct_field(array, name)
    return array


def _result_columns(batch: pa.RecordBatch) -> pa.RecordBatch | None:
    """One batch of result lines -> `RESULT_ROW_SCHEMA`; None when a line needs the slow reader."""
    ids, response, error = batch.column(0), batch.column(1), batch.column(2)
    if ids.null_count or pc.any(pc.equal(pc.utf8_length(ids), 0)).as_py():
        return None
    answered = pc.is_valid(response)
    code = _field(response, "status_code")
    if pc.any(pc.and_(answered, pc.is_null(code))).as_py():
        return None  # response without a status code
    if pc.any(pc.and_(pc.invert(answered), pc.is_null(error))).as_py():
        return None  # neither response nor error
    ok = pc.fill_null(pc.equal(code, 200), False)
    failed = pc.and_(answered, pc.invert(ok))
    rank = pc.cast(pc.if_else(answered, pc.if_else(ok, 0, 1), 2), pa.int8())
    body = _field(response, "body")
    body_error = _field(body, "error")
    null_str = pa.nulls(len(ids), pa.string())
    error_code = pc.if_else(
        failed,
        pc.coalesce(_field(body_error, "code"), _field(body_error, "type"), _field(error, "code")),
        pc.if_else(answered, null_str, _field(error, "code")),
    )
    error_message = pc.if_else(
        failed,
        pc.coalesce(_field(body_error, "message"), _field(error, "message")),
        pc.if_else(answered, null_str, _field(error, "message")),
    )
    choices = _field(body, "choices")
    if choices.null_count < len(choices):
        choice = pc.list_element(choices, 0)  # raises on an empty list: slow reader then
        content = pc.coalesce(_field(choice, "message", "content"), _field(choice, "text"))
        content = pc.if_else(ok, content, null_str)
        finish = pc.if_else(ok, _field(choice, "finish_reason"), null_str)
    else:
        content = finish = null_str
    embedding, embeddings = _embedding_columns(_field(body, "data"), ok)
    if embedding is None:
        return None
    usage = _field(body, "usage")
    has_usage = pc.and_(ok, pc.is_valid(usage))
    null_int = pa.nulls(len(ids), pa.int64())
    prompt = pc.if_else(has_usage, _field(usage, "prompt_tokens"), null_int)
    # embeddings report no completion tokens: zero produced
    completion = pc.if_else(has_usage, pc.fill_null(_field(usage, "completion_tokens"), 0), null_int)
    total = pc.if_else(has_usage, _field(usage, "total_tokens"), null_int)
    arrays = [
        ids, rank, pc.cast(code, pa.int32()), error_code, error_message, _field(body, "model"),
        content, finish, embedding, embeddings, prompt, completion, total,
    ]  # fmt: skip
    return pa.RecordBatch.from_arrays(arrays, schema=RESULT_ROW_SCHEMA)


def _embedding_columns(data: pa.Array, ok: pa.Array) -> tuple[pa.Array | None, pa.Array | None]:
    """(`embedding`, `embeddings`) from body.data; (None, None) if vectors are out of index order."""
    n = len(data)
    none = pa.nulls(n, SCHEMA.field("embedding").type), pa.nulls(n, SCHEMA.field("embeddings").type)
    if data.null_count == n:
        return none
    data = pc.if_else(ok, data, pa.nulls(n, data.type))
    counts = pc.fill_null(pc.list_value_length(data), 0)
    single = pc.equal(counts, 1)
    embedding = none[0]
    if pc.any(single).as_py():
        first = pc.list_element(pc.if_else(single, data, pa.nulls(n, data.type)), 0)
        embedding = pc.struct_field(first, "embedding")
    many = pc.greater(counts, 1)
    embeddings = none[1]
    if pc.any(many).as_py():
        data = pc.if_else(many, data, pa.nulls(n, data.type))
        items = pc.list_flatten(data)
        parents = pc.list_parent_indices(data).to_numpy()
        sizes = np.asarray(pc.fill_null(pc.list_value_length(data), 0))
        starts = np.concatenate([[0], np.cumsum(sizes)])
        position = np.arange(len(items)) - starts[parents]
        index = pc.fill_null(pc.struct_field(items, "index"), -1).to_numpy()
        if not np.array_equal(index, position):
            return None, None
        embeddings = pa.ListArray.from_arrays(
            pa.array(starts.astype(np.int32)), pc.struct_field(items, "embedding"),
            mask=pc.invert(many),
        )  # fmt: skip
    return embedding, embeddings
