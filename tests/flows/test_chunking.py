"""Chunking: deterministic, exact substrings, within the model's token budget."""

from __future__ import annotations

import pytest

from batch_workflows.errors import ConfigurationError
from batch_workflows.flows.corpus import Document, pydoc_documents
from batch_workflows.flows.embeddings.chunking import (
    MAX_TITLE_CHARS,
    HFTokenizer,
    RegexTokenizer,
    chunk_document,
    chunk_documents,
    default_model_path,
    embedding_text,
    load_tokenizer,
)


@pytest.fixture(scope="module")
def tok() -> HFTokenizer:
    t = load_tokenizer()
    assert isinstance(t, HFTokenizer)  # the shipped model's tokenizer, loaded offline
    return t


@pytest.fixture(scope="module")
def corpus() -> list[Document]:
    return list(pydoc_documents())


def test_chunks_fit_the_token_budget_and_retokenize_identically(tok, corpus):
    chunks = list(chunk_documents(corpus[:20], tok, chunk_size=120, overlap=20))
    assert len(chunks) > 40
    for c in chunks:
        spans, _ = tok.spans(c.text)
        assert len(spans) == c.tokens <= 120
    # Short topics are one chunk; long ones are several, all above the minimum of content.
    assert max(c.chunk_index for c in chunks) > 3


def test_chunks_are_exact_substrings_covering_the_document_with_overlap(tok, corpus):
    doc = next(d for d in corpus if d.id == "try")
    chunks = chunk_document(doc, tok, chunk_size=100, overlap=25)
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text
        assert (c.document_id, c.source) == ("try", "pydoc_data")
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start < a.end  # consecutive chunks overlap
        assert b.start > a.start  # and always move forward
    assert chunks[0].start == 0
    assert chunks[-1].end == len(doc.text.rstrip())


def test_deterministic_and_ids_stable(tok, corpus):
    first = [(c.chunk_id, c.text) for c in chunk_documents(corpus[:10], tok)]
    again = [(c.chunk_id, c.text) for c in chunk_documents(list(corpus[:10]), load_tokenizer())]
    assert first == again
    assert first[0][0] == f"{corpus[0].id}#0"


def test_regex_fallback_and_bad_settings():
    doc = Document("d", "alpha beta, gamma delta epsilon zeta eta theta iota kappa", "x")
    chunks = chunk_document(doc, RegexTokenizer(), chunk_size=4, overlap=1)
    assert [c.text for c in chunks] == [
        "alpha beta, gamma",
        "gamma delta epsilon zeta",
        "zeta eta theta iota",
        "iota kappa",
    ]
    assert chunk_document(Document("e", "   ", "x"), RegexTokenizer()) == []
    with pytest.raises(ConfigurationError):
        chunk_document(doc, RegexTokenizer(), chunk_size=4, overlap=4)
    with pytest.raises(ConfigurationError, match="tokenizer.json"):
        load_tokenizer("/nonexistent/model")
    assert default_model_path() is not None


def test_contextual_header_is_the_title_unless_the_chunk_starts_with_it(tok, corpus):
    assert embedding_text("body", "Title") == "Title\nbody"
    assert embedding_text("Title and body", "Title") == "Title and body"  # first chunk
    assert embedding_text("body", "") == embedding_text("body", None) == "body"
    assert embedding_text("body", "x" * 500) == "x" * MAX_TITLE_CHARS + "\nbody"
    doc = next(d for d in corpus if d.id == "try")
    chunks = chunk_document(doc, tok)
    assert len(chunks) > 2 and all(c.title == 'The "try" statement' for c in chunks)
    assert chunks[0].embedding_text == chunks[0].text  # the topic starts with its heading
    assert chunks[1].embedding_text == f'The "try" statement\n{chunks[1].text}'
    # The header leaves the chunk inside the model's 256-piece window.
    pieces = max(len(tok.spans(c.embedding_text)[0])
                 for d in corpus for c in chunk_document(d, tok))
    assert pieces <= 254
