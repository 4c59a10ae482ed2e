"""Qdrant resource and indexing in local mode: dimension guard, idempotent upsert, stale points."""

from __future__ import annotations

import hashlib

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest
from dagster import EnvVar

from batch_workflows.dagster import QdrantResource
from batch_workflows.errors import ConfigurationError
from batch_workflows.flows.corpus import Document
from batch_workflows.flows.embeddings.chunking import RegexTokenizer, chunk_documents
from batch_workflows.flows.embeddings.index import _parts as index_parts
from batch_workflows.flows.embeddings.index import index_results
from batch_workflows.flows.embeddings.requests import (
    CHUNK_SCHEMA,
    ChunkTableWriter,
    build_requests,
    chunk_rows,
    embedded_texts,
    read_chunk_table,
)
from batch_workflows.flows.embeddings.vectors import (
    PartitionConflictError,
    QdrantSettings,
    point_id,
)
from batch_workflows.flows.side_table import tally_results, tally_side_table
from batch_workflows.results import join_results
from resources import qdrant_from_env

DIM = 8


def _vector(text: str) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32).tolist()


def _fake_batch(tmp_path, docs: list[Document], partition: str, fail: set[str] = frozenset()):
    """Requests + chunk table from the real builders, and provider-shaped output lines
    (deterministic fake vectors), joined by the real join_results."""
    chunks = chunk_documents(docs, RegexTokenizer(), chunk_size=6, overlap=2)
    table = ChunkTableWriter(tmp_path / f"{partition}-chunks.parquet", partition)
    req_path, out_path = tmp_path / f"{partition}-req.jsonl", tmp_path / f"{partition}-out.jsonl"
    with open(req_path, "wb") as req, open(out_path, "wb") as out:
        for r in build_requests(chunks, "fake-model", table, max_inputs=3):
            req.write(orjson.dumps(r) + b"\n")
            if r["custom_id"] in fail:
                body, code = {"error": {"message": "boom", "type": "server_error"}}, 500
            else:
                data = [
                    {"object": "embedding", "index": i, "embedding": _vector(t)}
                    for i, t in enumerate(r["body"]["input"])
                ][::-1]  # any order: indexing must follow `index`
                body, code = {"object": "list", "data": data, "model": "fake-model"}, 200
            line = {"id": "x", "custom_id": r["custom_id"], "error": None,
                    "response": {"status_code": code, "request_id": "r", "body": body}}
            out.write(orjson.dumps(line) + b"\n")
    table.close()
    results = join_results([str(req_path)], [str(out_path)], out_path=str(tmp_path / f"{partition}.parquet"))
    return table, results.path


DOCS = [
    Document("a", "one two three four five six seven eight nine ten eleven", "s"),
    Document("b", "alpha beta gamma delta", "s"),
    Document("c", "red green blue cyan magenta yellow black white grey", "s"),
]


@pytest.fixture
def qdrant(tmp_path) -> QdrantResource:
    return QdrantResource(path=str(tmp_path / "qdrant"), collection="test")


def test_upsert_is_idempotent_and_payload_complete(tmp_path, qdrant):
    table, results = _fake_batch(tmp_path, DOCS, "p1")
    with qdrant.open() as index:
        first = index_results(index, table.path, results, "p1", "fake-model")
        assert first.created_collection and first.dimension == DIM
        assert first.upserted == first.chunks == table.chunks == index.count("p1")
        again = index_results(index, table.path, results, "p1", "fake-model")
        assert not again.created_collection and again.stale_deleted == 0
        assert (again.upserted, again.unchanged) == (0, first.chunks)  # nothing rewritten
        assert index.count() == index.count("p1") == first.chunks  # overwritten, not duplicated
        hit = index.search(_vector("red green blue cyan magenta yellow"), limit=1)[0]
    assert hit["id"] == point_id("c", 0)
    assert {k: hit[k] for k in ("document_id", "chunk_index", "source", "partition", "model")} == {
        "document_id": "c", "chunk_index": 0, "source": "s", "partition": "p1", "model": "fake-model"}
    assert hit["text"] == "red green blue cyan magenta yellow" and hit["score"] > 0.999
    # The client was closed: another one (the search CLI, the next run) can open the folder;
    # vectors read back from disk (not normalized there) still compare equal: nothing rewritten.
    with qdrant.open() as index:
        assert index.count("p1") == first.chunks
        third = index_results(index, table.path, results, "p1", "fake-model")
        assert (third.upserted, third.unchanged) == (0, first.chunks)


def test_stale_points_of_removed_documents_and_chunks_are_deleted(tmp_path, qdrant):
    table, results = _fake_batch(tmp_path / "v1", DOCS, "p1")
    other_table, other_results = _fake_batch(tmp_path / "v1", [Document("z", "zeta eta", "s")], "p2")
    shorter = [Document("a", "one two three four", "s"), DOCS[1]]  # a shrank, c removed
    table2, results2 = _fake_batch(tmp_path / "v2", shorter, "p1")
    with qdrant.open() as index:
        index_results(index, table.path, results, "p1", "fake-model")
        index_results(index, other_table.path, other_results, "p2", "fake-model")
        report = index_results(index, table2.path, results2, "p1", "fake-model")
        assert report.stale_deleted == table.chunks - table2.chunks > 0
        assert report.upserted >= 1  # a#0 has new text: rewritten, not kept
        assert index.search(_vector("one two three four"), 1)[0]["text"] == (
            "one two three four")
        assert index.count("p1") == table2.chunks
        assert index.count("p2") == other_table.chunks  # other partitions untouched
        ids = set(index.partition_ids("p1"))
    assert point_id("c", 0) not in ids and point_id("a", 0) in ids


@pytest.mark.parametrize("skip_unchanged", [True, False])
def test_same_document_id_in_two_partitions_fails_instead_of_overwriting(
    tmp_path, qdrant, skip_unchanged
):
    table, results = _fake_batch(tmp_path, DOCS, "p1")
    # Partition p2 holds another document also called "b" (another source file).
    clash = [Document("y", "psi omega", "s2"), Document("b", "totally different text here", "s2")]
    table2, results2 = _fake_batch(tmp_path, clash, "p2")
    with qdrant.open() as index:
        index_results(index, table.path, results, "p1", "fake-model")
        before = index.client.retrieve("test", [point_id("b", 0)], with_payload=True)[0].payload
        with pytest.raises(PartitionConflictError) as info:
            index_results(index, table2.path, results2, "p2", "fake-model",
                          skip_unchanged=skip_unchanged)
        err = info.value
        assert (err.document_id, err.owner, err.partition) == ("b", "p1", "p2")
        assert "'b'" in str(err) and "'p1'" in str(err) and "'p2'" in str(err)
        after = index.client.retrieve("test", [point_id("b", 0)], with_payload=True)[0].payload
        assert after == before  # p1's point untouched
        assert index.count("p1") == table.chunks


def test_request_tallies_agree_exactly_when_both_files_name_the_same_requests(tmp_path):
    table, results = _fake_batch(tmp_path / "one", DOCS, "p1")
    planned, got = tally_side_table(table.path), tally_results(results)
    requests = pq.read_table(results, columns=["custom_id"]).column(0).to_pylist()
    assert planned.rows == table.chunks
    assert planned.requests == got.requests == len(set(requests)) > 1
    assert planned.fingerprint == got.fingerprint and planned.same_requests(got)
    # Same number of requests, other ids (a document renamed): the fingerprints differ.
    edited = [Document("z", DOCS[0].text, "s"), *DOCS[1:]]
    _, other = _fake_batch(tmp_path / "two", edited, "p1")
    changed = tally_results(other)
    assert changed.requests == got.requests and changed.fingerprint != got.fingerprint
    assert not changed.same_requests(got)
    # A result missing.
    part = pq.read_table(results).slice(1)
    pq.write_table(part, tmp_path / "fewer.parquet")
    assert tally_results(tmp_path / "fewer.parquet").requests == got.requests - 1


def test_delete_stale_pages_through_the_partition(tmp_path, qdrant):
    table, results = _fake_batch(tmp_path, DOCS, "p1")
    keep = [point_id("a", 0), point_id("c", 1)]
    with qdrant.open() as index:
        index_results(index, table.path, results, "p1", "fake-model")
        assert index.delete_stale("p1", keep, batch=2) == table.chunks - 2
        assert sorted(index.partition_ids("p1")) == sorted(keep)


def test_failed_requests_are_counted_not_indexed(tmp_path, qdrant):
    table, results = _fake_batch(tmp_path, DOCS, "p1", fail={"b#0+3"})
    with qdrant.open() as index:
        report = index_results(index, table.path, results, "p1", "fake-model")
    assert report.failed_requests == 1 and report.failed_sample == ["b#0+3"]
    assert report.upserted == report.chunks - report.failed_chunks


def test_dimension_mismatch_is_a_clear_error(qdrant):
    with qdrant.open() as index:
        assert index.ensure_collection(DIM) is True
        assert index.ensure_collection(DIM) is False
        with pytest.raises(ConfigurationError, match="holds 8-dimensional vectors.*produces 384"):
            index.ensure_collection(384)


def test_a_second_client_on_a_held_folder_gets_a_clear_error(qdrant):
    with qdrant.open():
        with pytest.raises(ConfigurationError, match="in use by another process"):
            with qdrant.open():
                pass


def test_from_env_reads_the_same_variables_as_search(monkeypatch, tmp_path):
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "q"))
    monkeypatch.setenv("QDRANT_COLLECTION", "c1")
    monkeypatch.setenv("QDRANT_API_KEY", "secret-key-value")
    monkeypatch.delenv("QDRANT_URL", raising=False)
    res = qdrant_from_env()
    assert (res.path, res.collection) == (str(tmp_path / "q"), "c1")
    assert "secret-key-value" not in res.describe()
    monkeypatch.setenv("QDRANT_URL", "http://qdrant.invalid:6333")
    res, plain = qdrant_from_env(), QdrantSettings.from_env()
    assert (res.url, res.path, res.collection) == (plain.url, plain.path, plain.collection)
    assert plain.api_key == "secret-key-value"  # search reads the key itself ...
    assert isinstance(res.api_key, EnvVar)  # ... the resource leaves it to Dagster
    assert res.api_key.env_var_name == "QDRANT_API_KEY"
    monkeypatch.delenv("QDRANT_API_KEY")
    assert qdrant_from_env().api_key is None


def test_titled_chunks_are_embedded_under_their_title_and_stored_raw(tmp_path, qdrant):
    docs = [Document("t", "one two three four five six seven eight nine ten", "s", "Numbers")]
    table, results = _fake_batch(tmp_path, docs, "p1")
    requests = [orjson.loads(line) for line in (tmp_path / "p1-req.jsonl").read_bytes().splitlines()]
    inputs = [text for r in requests for text in r["body"]["input"]]
    stored = read_chunk_table(table.path)
    raw = stored.column("text").to_pylist()
    assert len(raw) > 1 and set(stored.column("title").to_pylist()) == {"Numbers"}
    assert inputs == [f"Numbers\n{t}" for t in raw]  # no chunk starts with the title
    assert embedded_texts(stored) == inputs and embedded_texts(stored, [1]) == inputs[1:2]
    with qdrant.open() as index:
        index_results(index, table.path, results, "p1", "fake-model")
        hit = index.search(_vector(inputs[1]), limit=1)[0]
    assert hit["text"] == raw[1] and hit["score"] > 0.999  # payload: the raw chunk


def test_chunk_table_written_before_titles_reads_with_empty_titles(tmp_path):
    table, _ = _fake_batch(tmp_path, DOCS, "p1")
    old = pq.read_table(table.path).drop_columns(["title"])
    pq.write_table(old, tmp_path / "old.parquet")
    back = read_chunk_table(tmp_path / "old.parquet")
    assert back.schema == CHUNK_SCHEMA and set(back.column("title").to_pylist()) == {""}
    assert embedded_texts(back) == old.column("text").to_pylist()


def test_document_search_gives_the_best_chunk_of_distinct_documents(tmp_path, qdrant):
    table, results = _fake_batch(tmp_path, DOCS, "p1")
    with qdrant.open() as index:
        index_results(index, table.path, results, "p1", "fake-model")
        query = _vector(read_chunk_table(table.path).column("text")[1].as_py())  # a#1 exactly
        chunks = index.search(query, limit=100)
        docs = index.search_documents(query, limit=3)
        assert index.search_documents(query, limit=1) == docs[:1]
    assert len(chunks) == table.chunks > 3
    best = {}
    for hit in chunks:  # best first: the first chunk seen of a document is its best
        best.setdefault(hit["document_id"], hit)
    assert [h["document_id"] for h in docs] == list(best)[:3]
    assert [h["id"] for h in docs] == [h["id"] for h in best.values()][:3]
    assert docs[0]["id"] == point_id("a", 1) and docs[0]["score"] > 0.999
    assert docs[0]["score"] >= docs[1]["score"] >= docs[2]["score"]


def _points(index) -> dict[str, tuple]:
    points, _ = index.client.scroll(index.collection, limit=1000, with_vectors=True)
    return {str(p.id): (p.payload, np.round(p.vector, 5).tolist()) for p in points}


def test_a_large_chunk_table_is_indexed_in_parts_with_the_same_outcome(tmp_path):
    docs = [Document(f"d{i}", " ".join(f"w{i}x{j}" for j in range(40)), "s") for i in range(30)]
    table, results = _fake_batch(tmp_path, docs, "p1", fail={"d3#0+3"})
    assert len([part for part, _ in index_parts(table.path, results, 2_000)]) > 3  # really in parts
    whole_q = QdrantResource(path=str(tmp_path / "q-whole"), collection="test")
    parts_q = QdrantResource(path=str(tmp_path / "q-parts"), collection="test")
    with whole_q.open() as whole, parts_q.open() as parts:
        a = index_results(whole, table.path, results, "p1", "fake-model")
        b = index_results(parts, table.path, results, "p1", "fake-model", part_bytes=2_000)
        assert _points(whole) == _points(parts) and len(_points(parts)) == a.upserted
        # A shrunken shard, indexed in parts, deletes its stale points too.
        table2, results2 = _fake_batch(tmp_path / "v2", docs[:20], "p1")
        c = index_results(parts, table2.path, results2, "p1", "fake-model", part_bytes=2_000)
        assert parts.count("p1") == c.chunks == table2.chunks
    keys = ("chunks", "upserted", "failed_requests", "failed_chunks", "dimension")
    assert [getattr(a, k) for k in keys] == [getattr(b, k) for k in keys]
    assert a.failed_requests == 1 and b.failed_sample == ["d3#0+3"]
    assert c.stale_deleted == table.chunks - table2.chunks
    assert (c.upserted, c.unchanged) == (a.failed_chunks, c.chunks - a.failed_chunks)  # d3 now in
    assert [*tmp_path.rglob(".index-*"), *tmp_path.rglob(".stale-*")] == []  # spills removed


def test_chunk_rows_reads_only_the_rows_asked_for(tmp_path):
    docs = [Document(f"d{i}", " ".join(f"w{j}" for j in range(30)), "s", "T") for i in range(5)]
    chunks = chunk_documents(docs, RegexTokenizer(), chunk_size=6, overlap=2)
    table = ChunkTableWriter(tmp_path / "chunks.parquet", "p1", row_group=4)
    list(build_requests(chunks, "fake-model", table, max_inputs=3))
    table.close()
    assert pq.ParquetFile(table.path).metadata.num_row_groups > 3
    whole = read_chunk_table(table.path)
    rows = [0, 3, 4, 9, whole.num_rows - 1]
    assert chunk_rows(table.path, rows).to_pylist() == whole.take(rows).to_pylist()
    assert chunk_rows(table.path, []).num_rows == 0
