"""RequestValidator: one small bad file per rule, with the exact line and field."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import orjson
import pytest

from batch_workflows.errors import ConfigurationError, InvalidInputError
from batch_workflows.profiles import CHAT, EMBEDDINGS, get_profile
from batch_workflows.requests import RequestValidator, validate_file, validate_requests
from batch_workflows.requests import duplicates as duplicates_mod
from batch_workflows.requests import lines as lines_mod
from batch_workflows.wire import BatchRequest

NEBIUS = get_profile("nebius")
LOCAL = get_profile("local")


def chat(i: int | str, model: str = "m1", **extra: object) -> dict:
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": f"document {i}"},
        ],
    }
    return {"custom_id": f"r{i}", "method": "POST", "url": CHAT, "body": body, **extra}


def emb(i: int | str, inp: object = "some text", model: str = "e1") -> dict:
    return {
        "custom_id": f"e{i}",
        "method": "POST",
        "url": EMBEDDINGS,
        "body": {"model": model, "input": inp},
    }


def write(tmp_path: Path, lines: list, name: str = "in.jsonl", end: bytes = b"\n") -> Path:
    """Lines may be dicts (serialised) or raw bytes (written as they are)."""
    raw = [x if isinstance(x, bytes) else orjson.dumps(x) for x in lines]
    path = tmp_path / name
    path.write_bytes(end.join(raw) + end)
    return path


def where(report) -> list[tuple[int, str | None]]:
    return [(p.line, p.field) for p in report.problems]


def check(tmp_path: Path, lines: list, profile=NEBIUS, **kw) -> list[tuple[int, str | None]]:
    report = validate_file(write(tmp_path, lines), profile, **kw)
    # every problem names the file
    assert all(p.source.endswith("in.jsonl") for p in report.problems)
    return where(report)


# -- files that pass ------------------------------------------------------------------------


def test_valid_file_reports_counts_endpoint_and_model(tmp_path: Path) -> None:
    report = validate_file(write(tmp_path, [chat(i) for i in range(5)]), NEBIUS)
    assert report.ok and report.problems == []
    assert (report.lines, report.requests) == (5, 5)
    assert (report.endpoint, report.model) == (CHAT, "m1")
    report.raise_for_problems()  # no-op


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    raw = [orjson.dumps(chat(i)) for i in range(3)]
    path = tmp_path / "bom.jsonl"
    path.write_bytes(lines_mod.BOM + b"\r\n".join(raw) + b"\r\n")
    report = validate_file(path, NEBIUS)
    assert report.ok, report.problems
    assert report.requests == 3


def test_no_final_newline_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(orjson.dumps(chat(1)) + b"\n" + orjson.dumps(chat(2)))
    assert validate_file(path, NEBIUS).ok


def test_assistant_tool_call_without_content_and_content_parts_pass(tmp_path: Path) -> None:
    r = chat(1)
    r["body"]["messages"] += [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function"}]},
        {"role": "tool", "content": "42", "tool_call_id": "c"},
        {"role": "user", "content": [{"type": "text", "text": "and?"}]},
    ]
    assert check(tmp_path, [r, chat(2)]) == []


def test_embedding_inputs_of_every_accepted_shape_pass(tmp_path: Path) -> None:
    lines = [emb(1, "a"), emb(2, ["a", "b"]), emb(3, [1, 2, 3]), emb(4, [[1, 2], [3]])]
    assert check(tmp_path, lines) == []


def test_extra_top_level_and_body_keys_are_allowed(tmp_path: Path) -> None:
    r = chat(1, note="mine")
    r["body"]["temperature"] = 0.2
    assert check(tmp_path, [r]) == []


# -- one bad file per rule ------------------------------------------------------------------


def test_not_utf8(tmp_path: Path) -> None:
    bad = orjson.dumps(chat(2)).replace(b"document", b"doc\xff\xfeument")
    report = validate_file(write(tmp_path, [chat(1), bad, chat(3)]), NEBIUS)
    assert where(report) == [(2, None)]
    assert "UTF-8" in report.problems[0].reason


def test_not_json_and_not_an_object(tmp_path: Path) -> None:
    lines = [chat(1), b'{"custom_id": "r2", ', b"[1, 2]", b'"text"', chat(5)]
    report = validate_file(write(tmp_path, lines), NEBIUS)
    assert where(report) == [(2, None), (3, None), (4, None)]
    assert "not valid JSON" in report.problems[0].reason
    assert "not a JSON object (got array)" in report.problems[1].reason


@pytest.mark.parametrize(
    ("custom_id", "reason"),
    [(None, "missing"), (7, "must be a string"), ("", "must not be empty")],
)
def test_custom_id_missing_non_string_or_empty(tmp_path: Path, custom_id, reason) -> None:
    r = chat(2)
    if custom_id is None:
        del r["custom_id"]
    else:
        r["custom_id"] = custom_id
    report = validate_file(write(tmp_path, [chat(1), r, chat(3)]), NEBIUS)
    assert where(report) == [(2, "custom_id")]
    assert reason in report.problems[0].reason


def test_duplicate_custom_id_names_the_line_of_first_use(tmp_path: Path) -> None:
    lines = [chat(i) for i in range(1, 8)]
    lines[5] = chat(3)  # line 6 reuses r3 from line 3
    lines[6] = chat(3)  # and line 7
    report = validate_file(write(tmp_path, lines), NEBIUS)
    assert where(report) == [(6, "custom_id"), (7, "custom_id")]
    assert report.problems[0].reason == 'duplicate custom_id "r3" (first used on line 3)'
    assert str(report.problems[1]).endswith(
        'in.jsonl:7: custom_id: duplicate custom_id "r3" (first used on line 3)'
    )


def test_duplicates_found_across_spilled_runs_and_temp_files_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duplicates_mod, "DUPLICATE_BUFFER", 16)
    lines = [emb(i) for i in range(1, 501)]
    lines[399] = emb(17)  # line 400 duplicates line 17, several runs later
    lines[499] = emb(250)
    path = write(tmp_path, lines)
    for validator in (
        RequestValidator(NEBIUS, source=str(path), path=path),  # confirmed by re-reading
        RequestValidator(NEBIUS, source=str(path)),  # confirmed by a second hash
    ):
        with open(path, "rb") as f:
            validator.check_stream(f)
        spill_dir = validator._dups._tmpdir.name
        assert len(os.listdir(spill_dir)) >= 20
        report = validator.finish()
        assert where(report) == [(400, "custom_id"), (500, "custom_id")]
        assert "(first used on line 17)" in report.problems[0].reason
        assert "(first used on line 250)" in report.problems[1].reason
        assert not os.path.exists(spill_dir)


def test_method_other_than_post(tmp_path: Path) -> None:
    r2, r3 = chat(2), chat(3)
    r2["method"] = "GET"
    del r3["method"]
    report = validate_file(write(tmp_path, [chat(1), r2, r3]), NEBIUS)
    assert where(report) == [(2, "method"), (3, "method")]
    assert '"GET"' in report.problems[0].reason


def test_url_not_an_endpoint_of_the_profile(tmp_path: Path) -> None:
    r = chat(2)
    r["url"] = "/v1/responses"  # openai has it, nebius does not
    assert check(tmp_path, [chat(1), r]) == [(2, "url")]
    assert check(tmp_path, [chat(1), r], profile=get_profile("openai")) == [(2, "url")]
    only = copy.deepcopy(r)
    only["custom_id"] = "x"
    assert check(tmp_path, [only], profile=get_profile("openai")) == []


def test_url_different_from_the_files_endpoint(tmp_path: Path) -> None:
    # the first line fixes the endpoint; later lines must match it
    assert check(tmp_path, [chat(1), emb(2, model="m1"), chat(3)]) == [(2, "url")]
    # the endpoint argument fixes it from the start
    assert check(tmp_path, [chat(1, "e1"), emb(2)], endpoint=EMBEDDINGS) == [(1, "url")]


def test_endpoint_argument_must_belong_to_the_profile() -> None:
    with pytest.raises(ConfigurationError, match="/v1/moderations"):
        RequestValidator(NEBIUS, endpoint="/v1/moderations")


def test_body_not_an_object_or_without_string_model(tmp_path: Path) -> None:
    r2, r3, r4, r5 = chat(2), chat(3), chat(4), chat(5)
    r2["body"] = ["not", "an", "object"]
    del r3["body"]["model"]
    r4["body"]["model"] = 12
    del r5["body"]
    assert check(tmp_path, [chat(1), r2, r3, r4, r5]) == [
        (2, "body"),
        (3, "body.model"),
        (4, "body.model"),
        (5, "body"),
    ]


def test_model_differing_across_the_file(tmp_path: Path) -> None:
    lines = [chat(1, "m1"), chat(2, "m1"), chat(3, "m2")]
    report = validate_file(write(tmp_path, lines), NEBIUS)
    assert where(report) == [(3, "body.model")]
    assert '"m2" differs from the file\'s model "m1"' in report.problems[0].reason
    many_models = NEBIUS.with_limits(one_model_per_file=False)
    assert check(tmp_path, lines, profile=many_models) == []


def test_line_longer_than_the_profile_limit(tmp_path: Path) -> None:
    small = NEBIUS.with_limits(max_line_bytes=300)
    long = chat(2)
    long["body"]["messages"][1]["content"] = "x" * 400
    report = validate_file(write(tmp_path, [chat(1), long, chat(3)]), small)
    assert where(report) == [(2, None)]
    assert "over the provider limit of 300 bytes" in report.problems[0].reason


def test_huge_line_spanning_read_chunks_is_skipped_and_counted(tmp_path: Path) -> None:
    small = NEBIUS.with_limits(max_line_bytes=1000)
    huge = orjson.dumps(chat(2))[:-2] + b"x" * (5 << 20) + b'"}'  # longer than one read chunk
    report = validate_file(write(tmp_path, [chat(1), huge, chat(3), b"[]"]), small)
    assert where(report) == [(2, None), (4, None)]
    assert f"{len(huge):,} bytes" in report.problems[0].reason
    assert report.lines == 4


@pytest.mark.parametrize(
    ("inp", "field"),
    [
        ("", "body.input"),
        ([], "body.input"),
        (None, "body.input"),
        (["a", ""], "body.input[1]"),
        (["a", 3], "body.input[1]"),
        ([[1, 2], []], "body.input[1]"),
        ({"text": "a"}, "body.input"),
    ],
)
def test_embeddings_input_must_be_non_empty(tmp_path: Path, inp, field) -> None:
    r = emb(2, inp)
    if inp is None:
        del r["body"]["input"]
    assert check(tmp_path, [emb(1), r]) == [(2, field)]


def _messages(messages: object) -> dict:
    r = chat(2)
    r["body"]["messages"] = messages
    return r


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        ([], "body.messages"),
        ("hello", "body.messages"),
        (["hello"], "body.messages[0]"),
        ([{"content": "hi"}], "body.messages[0].role"),
        ([{"role": 1, "content": "hi"}], "body.messages[0].role"),
        ([{"role": "robot", "content": "hi"}], "body.messages[0].role"),
        ([{"role": "user", "content": "a"}, {"role": "user"}], "body.messages[1].content"),
        ([{"role": "user", "content": 5}], "body.messages[0].content"),
        ([{"role": "user", "content": []}], "body.messages[0].content"),
        ([{"role": "user", "content": ["text"]}], "body.messages[0].content[0]"),
        ([{"role": "assistant", "content": None}], "body.messages[0].content"),
    ],
)
def test_chat_messages_must_be_role_content_objects(tmp_path: Path, messages, field) -> None:
    assert check(tmp_path, [chat(1), _messages(messages)]) == [(2, field)]


def test_missing_messages(tmp_path: Path) -> None:
    r = chat(2)
    del r["body"]["messages"]
    assert check(tmp_path, [chat(1), r]) == [(2, "body.messages")]


def test_several_problems_on_one_line_are_all_reported(tmp_path: Path) -> None:
    r = {"custom_id": "", "method": "PUT", "url": "/nope", "body": {}}
    assert check(tmp_path, [chat(1), r]) == [
        (2, "custom_id"),
        (2, "method"),
        (2, "url"),
        (2, "body.model"),
    ]


# -- blank lines, empty files, the cap ------------------------------------------------------


def test_blank_lines_are_errors_except_one_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    one, two = orjson.dumps(chat(1)), orjson.dumps(chat(2))
    path.write_bytes(one + b"\n\n" + two + b"\n   \n")
    report = validate_file(path, NEBIUS)
    assert where(report) == [(2, None), (4, None)]
    assert {p.reason for p in report.problems} == {"blank line"}
    path.write_bytes(one + b"\r\n" + two + b"\r\n\r\n")  # a second final newline is a blank line
    assert where(validate_file(path, NEBIUS)) == [(3, None)]


@pytest.mark.parametrize("content", [b"", b"\n", lines_mod.BOM])
def test_a_file_without_requests_is_an_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    report = validate_file(path, NEBIUS)
    assert not report.ok
    assert report.problems[-1].line == 1
    assert "no requests" in report.problems[-1].reason
    with pytest.raises(InvalidInputError, match="no requests"):
        report.raise_for_problems()


def test_collection_stops_at_the_cap_but_lines_are_still_counted(tmp_path: Path) -> None:
    lines = [chat(1)] + [b"nope"] * 9 + [chat(11)] * 2
    report = validate_file(write(tmp_path, lines), NEBIUS, max_problems=3)
    assert where(report) == [(2, None), (3, None), (4, None)]
    assert report.truncated
    assert report.lines == 12
    with pytest.raises(InvalidInputError) as err:
        report.raise_for_problems()
    assert err.value.truncated and len(err.value.problems) == 3


# -- the other ways in ----------------------------------------------------------------------


def test_check_line_handles_bom_crlf_and_returns_the_object() -> None:
    v = RequestValidator(NEBIUS, source="upload.jsonl")
    obj = v.check_line(lines_mod.BOM + orjson.dumps(chat(1)) + b"\r", 1)
    assert obj is not None and obj["custom_id"] == "r1"
    assert v.check_line(orjson.dumps(chat(1)) + b"\r\n", 2) is not None  # dup found at finish
    assert v.check_line(b"{", 3) is None
    report = v.finish()
    assert where(report) == [(2, "custom_id"), (3, None)]
    assert report.source == "upload.jsonl" and report.lines == 3


def test_validate_requests_takes_dicts_and_batch_requests() -> None:
    good = [BatchRequest(**chat(1)), chat(2), BatchRequest(**chat(3))]
    assert validate_requests(good, LOCAL).ok
    bad = [chat(1), chat(2), {**chat(3), "method": "GET"}, chat(1)]
    report = validate_requests(bad, LOCAL, source="<mine>")
    assert where(report) == [(3, "method"), (4, "custom_id")]
    assert "(first used on line 1)" in report.problems[1].reason
    assert str(report.problems[0]).startswith("<mine>:3: method: ")
    assert not validate_requests([], LOCAL).ok


def test_validate_requests_reports_unserialisable_objects() -> None:
    report = validate_requests(
        [chat(1), {**chat(2), "body": {"model": "m1", "x": object()}}], LOCAL
    )
    assert where(report) == [(2, None)]


def test_fast_path_never_accepts_what_the_full_check_rejects() -> None:
    """The hot path is only a shortcut: wherever it says yes, the full rules must agree."""
    base = chat(0)
    variants: list[object] = [base, emb(0), emb(0, ["a", "b"]), [], "x", None]
    mutations = [
        ("custom_id", ""),
        ("custom_id", 3),
        ("method", "post"),
        ("url", EMBEDDINGS),
        ("url", None),
        ("body", []),
    ]
    for key, value in mutations:
        variants.append({**base, key: value})
    for model in ("", None, 1, "m2"):
        variants.append({**base, "body": {**base["body"], "model": model}})
    variants += [{**base, "body": "text"}, {**base, "body": ["model"]}]
    for messages in (
        [],
        [{}],
        [{"role": "user"}],
        [{"role": "bot", "content": "x"}],
        "x",
        ["content"],
        [["content", "x"]],
        {"content": "x"},
    ):
        variants.append({**base, "body": {**base["body"], "messages": messages}})
    for obj in variants:
        for endpoint in (CHAT, EMBEDDINGS):
            v = RequestValidator(NEBIUS, endpoint=endpoint)
            v.model = "m1" if endpoint == CHAT else "e1"
            fast = v.fast_check(copy.deepcopy(obj))
            full = v._check_full(copy.deepcopy(obj), 1, None)
            if fast is not None:
                assert full, obj


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 16])
def test_line_splitting_matches_a_plain_split_at_any_chunk_size(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import random

    monkeypatch.setattr(lines_mod, "READ_CHUNK_BYTES", chunk)
    rng = random.Random(chunk)
    for _ in range(30):
        lines = [b"x" * rng.choice([0, 1, 2, 5, 40, 200]) for _ in range(rng.randint(0, 12))]
        data = b"\n".join(lines) + rng.choice([b"", b"\n"])
        got = [
            raw for batch in lines_mod.iter_line_batches(io.BytesIO(data), 100) for raw in batch
        ]
        want = data.split(b"\n")
        if data.endswith(b"\n") or not data:
            want.pop()
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            if isinstance(g, lines_mod.OverlongLine):  # only ever stands in for a long line
                assert g.size == len(w) > 100
            else:
                assert g == w


@pytest.mark.parametrize("double_hash", [False, True])
def test_duplicate_index_matches_a_plain_dict(
    double_hash: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import random

    monkeypatch.setattr(duplicates_mod, "DUPLICATE_BUFFER", 37)
    rng = random.Random(5)
    index = duplicates_mod.DuplicateIndex(double_hash=double_hash)
    first_use: dict[str, int] = {}
    expected: dict[int, list[int]] = {}
    line = 0
    for _ in range(120):
        line += rng.choice([1, 1, 1, 2, 9])  # gaps: lines without an id
        ids = [f"id{rng.randrange(400)}" for _ in range(rng.choice([1, 1, 5, 30]))]
        if len(ids) == 1:
            index.add(ids[0], line)
        else:
            index.add_many(ids, line)
        for offset, cid in enumerate(ids):
            at = line + offset
            if cid in first_use:
                expected.setdefault(first_use[cid], [first_use[cid]]).append(at)
            else:
                first_use[cid] = at
        line += len(ids) - 1
    groups = sorted(index.candidates())
    index.close()
    assert groups == sorted(expected.values())
