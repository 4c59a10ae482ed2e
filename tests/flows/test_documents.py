"""The embeddings flow's documents: the readers of user files (local and S3) by format and
partition key, with bad rows reported by file, line and field."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.s3 import start_s3_server

from batch_workflows.errors import ConfigurationError, InvalidInputError
from batch_workflows.flows.corpus import pydoc_documents
from batch_workflows.flows.embeddings.documents import (
    DOCUMENT_SUFFIXES,
    documents_for_key,
    read_documents,
)
from batch_workflows.flows.sources import list_source_files


def _write_all_formats(root):
    root.mkdir(parents=True, exist_ok=True)
    (root / "a.jsonl").write_bytes(
        b"\xef\xbb\xbf" + orjson.dumps({"id": "j1", "text": "first"}) + b"\r\n\n"
        + orjson.dumps({"id": 2, "text": "second", "extra": 1}) + b"\n"
    )
    (root / "b.csv").write_text('id,text\nc1,"one, with comma"\nc2,"two\nlines"\n')
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": ["pa", "pb"], "x": [1, 2]}), root / "c.parquet")
    (root / "notes.md").write_text("# Title\n\nbody line\n")
    (root / ".hidden.jsonl").write_text("ignored")
    (root / "skip.bin").write_bytes(b"\x00")


def _read(uri, **kw):
    return [(d.id, d.text) for d in read_documents(uri, **kw)]


def test_readers_for_each_format(tmp_path):
    _write_all_formats(tmp_path)
    assert _read(str(tmp_path / "a.jsonl")) == [("j1", "first"), ("2", "second")]
    assert _read(str(tmp_path / "b.csv")) == [("c1", "one, with comma"), ("c2", "two\nlines")]
    assert _read(str(tmp_path / "c.parquet")) == [("p1", "pa"), ("p2", "pb")]
    assert _read(str(tmp_path / "notes.md")) == [("notes", "# Title\n\nbody line\n")]
    assert _read(str(tmp_path / "notes.md"), text_unit="line") == [
        ("notes:1", "# Title"),
        ("notes:3", "body line"),
    ]
    names = [f.name for f in list_source_files(str(tmp_path), suffixes=DOCUMENT_SUFFIXES)]
    assert names == ["a.jsonl", "b.csv", "c.parquet", "notes.md"]
    assert list_source_files(str(tmp_path / "missing"), suffixes=DOCUMENT_SUFFIXES) == []
    docs = list(documents_for_key("b.csv", str(tmp_path)))
    assert {d.source for d in docs} == {"b.csv"}
    shipped = list(documents_for_key("pydoc-1-of-3", str(tmp_path)))  # not a file: the corpus
    assert shipped == list(pydoc_documents(1, 3))


def test_bad_rows_are_reported_with_file_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"id": "ok", "text": "fine"}\n'
        '{"id": "no-text"}\n'
        "not json\n"
        '{"id": "ok", "text": "duplicate"}\n'
        '{"text": "no id"}\n'
        '{"id": "e", "text": "  "}\n'
    )
    got = []
    with pytest.raises(InvalidInputError) as err:
        for doc in read_documents(str(path)):
            got.append(doc.id)
    assert got == ["ok"]  # valid rows before the end were streamed
    problems = [(p.line, p.field) for p in err.value.problems]
    assert problems == [(2, "text"), (3, None), (4, "id"), (5, "id"), (6, "text")]
    assert str(err.value.problems[2]).startswith(f"{path}:4: id: duplicate")
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text("name,body\nx,y\n")
    with pytest.raises(InvalidInputError, match="column missing"):
        list(read_documents(str(csv_path)))
    with pytest.raises(ConfigurationError, match="unsupported"):
        list(read_documents(str(tmp_path / "x.docx")))


def test_s3_prefix_listing_and_streamed_reading(tmp_path):
    local = tmp_path / "src"
    _write_all_formats(local)
    with start_s3_server() as s3:
        client = s3.client()
        s3.create_bucket("docs")
        for f in local.iterdir():
            client.upload_file(str(f), "docs", f"inbox/{f.name}")
        files = list_source_files("s3://docs/inbox", suffixes=DOCUMENT_SUFFIXES, s3_client=client)
        assert [f.name for f in files] == ["a.jsonl", "b.csv", "c.parquet", "notes.md"]
        assert files[-1].uri == "s3://docs/inbox/notes.md" and files[-1].version
        for name in ("a.jsonl", "b.csv", "c.parquet", "notes.md"):
            remote = [(d.id, d.text) for d in documents_for_key(name, "s3://docs/inbox", s3_client=client)]
            assert remote == _read(str(local / name))


def test_titles_optional_title_fields_and_markdown_headings(tmp_path):
    (tmp_path / "t.jsonl").write_bytes(
        orjson.dumps({"id": "a", "text": "body", "title": " Intro "}) + b"\n"
        + orjson.dumps({"id": "b", "text": "body", "title": 7}) + b"\n"  # not a string: none
        + orjson.dumps({"id": "c", "text": "body"}) + b"\n"
    )
    (tmp_path / "t.csv").write_text("id,text,title\nx,body,CSV title\n")
    pq.write_table(pa.table({"id": ["p"], "text": ["body"], "title": ["PQ title"]}),
                   tmp_path / "t.parquet")
    (tmp_path / "guide.md").write_text("\n# Install guide\n\nbody\n")
    (tmp_path / "plain.md").write_text("no heading here\n")

    def got(name: str) -> list[tuple[str, str]]:
        return [(d.id, d.title) for d in read_documents(str(tmp_path / name))]

    assert got("t.jsonl") == [("a", "Intro"), ("b", ""), ("c", "")]
    assert got("t.csv") == [("x", "CSV title")]
    assert got("t.parquet") == [("p", "PQ title")]
    assert got("guide.md") == [("guide", "Install guide")]
    assert got("plain.md") == [("plain", "")]
