"""Benchmark: semantic search quality over the shipped corpus (pydoc_data topics).

The evaluation set, tests/flows/data/search_eval.json, holds natural-language questions a Python
user would ask, each with the topic keys that answer it (the most specific first; several where
topics overlap, e.g. `try` and `compound`). It was written from the topic list before any search
result was looked at.

Two configurations, both measured in this run on the same chunks (the flow's default size and
overlap) in an in-memory Qdrant through `batch_workflows.flows.embeddings.vectors.VectorIndex`:

* baseline — each chunk embedded alone, the nearest chunks are the hits (the first version);
* shipped — each chunk embedded under its document's title (`chunking.embedding_text`, a
  contextual chunk header), and the hits are the best chunk of each of the nearest documents
  (`VectorIndex.search_documents`, what `batch-workflows search` prints by default).

Figures (fraction of questions): top-1 (the first hit is an acceptable document), top-1 strict
(the first hit is the most specific one), top-5 (an acceptable document among the first five
hits). Target: shipped ≥ baseline on each.

Embeddings come from the engine's own `EmbeddingBackend` in-process and are cached by text in
bench/.work/search_quality/ (the first run embeds the corpus twice: about two minutes on two CPU
cores; later runs take seconds). `scale` does not change the data (the corpus is what it is).
Run alone: `.venv/bin/python -m bench.search_quality`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from bench import run_alone

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "tests" / "flows" / "data" / "search_eval.json"
WORK = Path(__file__).resolve().parent / ".work" / "search_quality"
MODEL = "all-MiniLM-L6-v2"
TOP = 5


class CachedEmbedder:
    """Embeds texts with the engine's backend, remembering vectors by (model, text)."""

    def __init__(self, folder: Path = WORK):
        self.file = folder / "vectors.npz"
        folder.mkdir(parents=True, exist_ok=True)
        self.cache = dict(np.load(self.file)) if self.file.exists() else {}
        self.backend = None

    def embed(self, texts: list[str]) -> np.ndarray:
        keys = [hashlib.sha256(f"{MODEL}\x1f{t}".encode()).hexdigest() for t in texts]
        todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in self.cache}.items())
        if todo:
            if self.backend is None:
                from batch_workflows.backends.embeddings import EmbeddingBackend

                self.backend = EmbeddingBackend()
            for i in range(0, len(todo), 512):
                part = todo[i : i + 512]
                res = self.backend.run([{"model": MODEL, "input": [t for _, t in part]}])[0]
                if res.status_code != 200:
                    raise RuntimeError(f"embedding failed: {res.body}")
                data = sorted(res.body["data"], key=lambda d: d["index"])
                for (k, _), d in zip(part, data, strict=True):
                    self.cache[k] = np.asarray(d["embedding"], dtype=np.float32)
            np.savez(self.file, **self.cache)
        return np.stack([self.cache[k] for k in keys])


def load_eval(path: Path = EVAL) -> list[dict]:
    return json.loads(path.read_text())["queries"]


def evaluate(contextual: bool, per_document: bool, embedder: CachedEmbedder,
             queries: list[dict]) -> dict[str, float]:
    """Hit rates of one configuration over the eval set."""
    from qdrant_client import QdrantClient

    from batch_workflows.flows.corpus import pydoc_documents
    from batch_workflows.flows.embeddings.chunking import chunk_documents
    from batch_workflows.flows.embeddings.settings import EmbeddingsSettings
    from batch_workflows.flows.embeddings.vectors import VectorIndex, point_id

    s = EmbeddingsSettings()
    chunks = list(chunk_documents(pydoc_documents(), None, s.chunk_tokens, s.chunk_overlap))
    texts = [c.embedding_text if contextual else c.text for c in chunks]
    vectors = embedder.embed(texts)
    qvecs = embedder.embed([q["q"] for q in queries])
    client = QdrantClient(":memory:")
    try:
        index = VectorIndex(client, "eval")
        index.ensure_collection(vectors.shape[1])
        for i in range(0, len(chunks), 256):
            part = chunks[i : i + 256]
            index.upsert(
                [point_id(c.document_id, c.chunk_index) for c in part],
                vectors[i : i + 256],
                [{"document_id": c.document_id, "chunk_index": c.chunk_index, "text": c.text}
                 for c in part],
            )
        top1 = strict = top5 = 0
        misses = []
        for q, vec in zip(queries, qvecs, strict=True):
            search = index.search_documents if per_document else index.search
            docs = [h["document_id"] for h in search(vec, TOP)]
            top1 += docs[0] in q["expected"]
            strict += docs[0] == q["expected"][0]
            top5 += any(d in q["expected"] for d in docs)
            if docs[0] not in q["expected"]:
                misses.append((q["q"], q["expected"][0], docs[:3]))
    finally:
        client.close()
    n = len(queries)
    return {"top1": top1 / n, "strict": strict / n, "top5": top5 / n, "chunks": len(chunks),
            "misses": misses}


def run(scale: str = "full") -> list[dict]:
    queries = load_eval()
    embedder = CachedEmbedder()
    base = evaluate(False, False, embedder, queries)
    new = evaluate(True, True, embedder, queries)
    figures = []
    for key, label in (("top1", "top-1"), ("strict", "top-1 strict"), ("top5", f"top-{TOP}")):
        ratio = new[key] / base[key] if base[key] else float("inf")
        figures.append({
            "name": f"search_quality.{label} document hit rate ({len(queries)} questions)",
            "value": round(new[key], 3),
            "unit": "fraction",
            "baseline": round(base[key], 3),
            "ratio": round(ratio, 3),
            "target": ">= baseline (plain chunks, chunk hits)",
            "met": new[key] >= base[key],
        })
    return figures


if __name__ == "__main__":
    run_alone("search_quality", run)
