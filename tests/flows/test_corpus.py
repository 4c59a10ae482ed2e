"""The shipped corpus: pydoc_data's language reference, sharded into partition keys."""

from __future__ import annotations

from batch_workflows.flows.corpus import (
    parse_pydoc_key,
    pydoc_documents,
    pydoc_shard_keys,
    pydoc_topics,
)


def test_pydoc_corpus_shards_cover_every_topic_once():
    topics = pydoc_topics()
    assert len(topics) >= 70 and "try" in topics and "lambda" in topics
    keys = pydoc_shard_keys(3)
    assert keys == ["pydoc-1-of-3", "pydoc-2-of-3", "pydoc-3-of-3"]
    shards = [list(pydoc_documents(*parse_pydoc_key(k))) for k in keys]
    ids = [d.id for shard in shards for d in shard]
    assert sorted(ids) == sorted(topics) and len(ids) == len(set(ids))
    assert all(shard for shard in shards)
    sizes = [sum(len(d.text) for d in shard) for shard in shards]
    assert max(sizes) < 2 * min(sizes)  # balanced by text size
    doc = next(d for d in pydoc_documents() if d.id == "try")
    assert doc.source == "pydoc_data" and "except" in doc.text


def test_pydoc_keys_parse_only_when_well_formed():
    assert parse_pydoc_key("pydoc-2-of-3") == (2, 3)
    for key in ("pydoc-4-of-3", "pydoc-0-of-3", "pydoc-x-of-3", "pydoc-1", "notes.md"):
        assert parse_pydoc_key(key) is None


def test_titles_are_the_pydoc_headings():
    titles = {d.id: d.title for d in pydoc_documents()}
    assert titles["try"] == 'The "try" statement' and titles["lambda"] == "Lambdas"
    assert all(titles.values())
