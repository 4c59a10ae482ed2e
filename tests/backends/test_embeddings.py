"""EmbeddingBackend with the packaged all-MiniLM-L6-v2 (loaded once per session)."""

from __future__ import annotations

import base64
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from batch_workflows.backends.base import Backend

MODEL = "all-MiniLM-L6-v2"
TEXTS = [
    "hello world",
    "A batch is a file of requests.",
    "Embeddings map text to vectors; similar meanings land close together in the space.",
    "short",
    " ".join(["The local engine groups the inputs of many requests into one encode call."] * 6),
]


def _vec(result, i: int = 0) -> np.ndarray:
    return np.asarray(result.body["data"][i]["embedding"], dtype=np.float32)


def test_protocol_and_ids(embedder):
    assert isinstance(embedder, Backend)
    assert embedder.endpoint == "/v1/embeddings"
    assert embedder.model_ids == ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"]
    assert embedder.max_batch >= 1000


def test_response_is_openai_shaped_with_384_finite_values(embedder):
    (res,) = embedder.run([{"model": MODEL, "input": ["one", "two three"]}])
    assert res.status_code == 200
    body = res.body
    assert body["object"] == "list" and body["model"] == MODEL
    assert [d["index"] for d in body["data"]] == [0, 1]
    for item in body["data"]:
        assert item["object"] == "embedding"
        assert len(item["embedding"]) == 384
        assert all(isinstance(x, float) and math.isfinite(x) for x in item["embedding"])
    assert set(body["usage"]) == {"prompt_tokens", "total_tokens"}


def test_hub_name_is_served_too_and_echoed(embedder):
    (res,) = embedder.run([{"model": "sentence-transformers/all-MiniLM-L6-v2", "input": "hi"}])
    assert res.status_code == 200
    assert res.body["model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_float_and_base64_are_the_same_vector(embedder):
    flt, b64 = embedder.run(
        [
            {"model": MODEL, "input": TEXTS[2]},
            {"model": MODEL, "input": TEXTS[2], "encoding_format": "base64"},
        ]
    )
    raw = base64.b64decode(b64.body["data"][0]["embedding"])
    decoded = np.frombuffer(raw, dtype="<f4")
    assert decoded.shape == (384,)
    np.testing.assert_array_equal(decoded, _vec(flt))


def test_grouped_encode_equals_single_encode(embedder):
    grouped = embedder.run([{"model": MODEL, "input": t} for t in TEXTS])
    model = embedder.load()
    for i, text in enumerate(TEXTS):
        (alone,) = embedder.run([{"model": MODEL, "input": text}])
        np.testing.assert_allclose(_vec(grouped[i]), _vec(alone), atol=1e-5)
        direct = model.encode([text], convert_to_numpy=True)[0]
        np.testing.assert_allclose(_vec(grouped[i]), direct, atol=1e-5)


def test_multi_input_request_keeps_its_order(embedder):
    (multi,) = embedder.run([{"model": MODEL, "input": list(reversed(TEXTS))}])
    singles = embedder.run([{"model": MODEL, "input": t} for t in reversed(TEXTS)])
    for i, single in enumerate(singles):
        np.testing.assert_allclose(_vec(multi, i), _vec(single), atol=1e-5)


def test_long_text_is_truncated_not_failed(embedder):
    long_text = " ".join(f"word{i}" for i in range(5000))
    res, head = embedder.run(
        [{"model": MODEL, "input": long_text}, {"model": MODEL, "input": long_text[:4000]}]
    )
    assert res.status_code == 200
    window = embedder.max_seq_length
    assert window == 256
    assert res.body["usage"]["prompt_tokens"] == window  # what was actually embedded
    vec = _vec(res)
    assert np.isfinite(vec).all()
    # Both texts share their first 256 tokens, so truncation gives the same vector.
    np.testing.assert_allclose(vec, _vec(head), atol=1e-5)


def test_usage_counts_tokens_with_the_tokenizer(embedder):
    tok = embedder.load().tokenizer
    res, multi = embedder.run(
        [
            {"model": MODEL, "input": "hello world"},
            {"model": MODEL, "input": ["hello world", "a b c"]},
        ]
    )
    assert res.body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}  # [CLS] hello world [SEP]
    expected = len(tok("hello world")["input_ids"]) + len(tok("a b c")["input_ids"])
    assert multi.body["usage"]["prompt_tokens"] == expected == 9


@pytest.mark.parametrize(
    ("body", "status", "param", "needle"),
    [
        ({"model": MODEL, "input": "x", "dimensions": 128}, 400, "dimensions", "not supported"),
        ({"model": MODEL, "input": "x", "temperature": 1}, 400, "temperature", "Unrecognized"),
        ({"model": MODEL, "input": [[1, 2, 3]]}, 400, "input", "Token-id arrays"),
        ({"model": MODEL, "input": [1, 2, 3]}, 400, "input", "Token-id arrays"),
        ({"model": MODEL, "input": ""}, 400, "input", "empty"),
        ({"model": MODEL, "input": []}, 400, "input", "non-empty"),
        ({"model": MODEL}, 400, "input", "input"),
        ({"input": "x"}, 400, "model", "model"),
        ({"model": MODEL, "input": "x", "encoding_format": "int8"}, 400, "encoding_format", "int8"),
        ({"model": "text-embedding-3-small", "input": "x"}, 404, "model", "does not exist"),
    ],
)
def test_bad_requests_become_error_results(embedder, body, status, param, needle):
    good = {"model": MODEL, "input": "still fine"}
    first, bad, last = embedder.run([good, body, good])
    assert first.status_code == last.status_code == 200
    assert bad.status_code == status
    err = bad.body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param and needle in err["message"]
    assert err["type"] == "invalid_request_error"
    if status == 404:
        assert err["code"] == "model_not_found"


def test_dimensions_equal_to_the_native_size_is_accepted(embedder):
    (res,) = embedder.run([{"model": MODEL, "input": "x", "dimensions": 384}])
    assert res.status_code == 200


def test_other_local_model_path_is_served_under_its_folder_name(tmp_path):
    from batch_workflows.backends.embeddings import EmbeddingBackend, default_model_path

    link = tmp_path / "my-minilm"
    link.symlink_to(default_model_path(), target_is_directory=True)
    backend = EmbeddingBackend(link, device="cpu")
    assert backend.model_ids == ["my-minilm"]
    ok, wrong = backend.run([{"model": "my-minilm", "input": "x"}, {"model": MODEL, "input": "x"}])
    assert ok.status_code == 200 and len(ok.body["data"][0]["embedding"]) == 384
    assert wrong.status_code == 404
    backend.close()


def test_should_stop_leaves_unfinished_requests_as_none(embedder):
    # Texts run longest first, one window (4 forward batches) at a time; after the stop the
    # rest stay None, and a request is never half-answered.
    window = 4 * embedder.batch_size
    long = [{"model": MODEL, "input": f"a longer sentence about the batch number {i}"}
            for i in range(window)]
    short = [{"model": MODEL, "input": f"short {i}"} for i in range(40)]
    # Its first input is the longest text of all (first window), its second among the shortest.
    straddling = {"model": MODEL, "input": [
        "the longest sentence of them all, about the many batches this engine runs today", "x"]}
    bodies = [*short, straddling, *long]
    asked = iter([False, True])
    results = embedder.run(bodies, should_stop=lambda: next(asked))
    assert len(results) == len(bodies)
    assert results[: len(short) + 1] == [None] * (len(short) + 1)
    # The first window held the straddler's long input and window - 1 long requests.
    assert sum(r is not None for r in results) == window - 1
    assert all(r.status_code == 200 for r in results[len(short) + 1 :] if r is not None)
    assert None not in embedder.run(bodies[:10])  # no stop asked: everything answered


def test_load_stays_offline_without_writing_the_environment():
    # A fresh process with no HF_HUB_OFFLINE and a hub address that refuses connections: the
    # model still loads (local files only), and the process environment is left as it was.
    script = (
        "import os\n"
        "from batch_workflows.backends.embeddings import EmbeddingBackend\n"
        "backend = EmbeddingBackend(device='cpu')\n"
        "(res,) = backend.run([{'model': 'all-MiniLM-L6-v2', 'input': 'x'}])\n"
        "assert res.status_code == 200, res.body\n"
        "assert 'HF_HUB_OFFLINE' not in os.environ\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
