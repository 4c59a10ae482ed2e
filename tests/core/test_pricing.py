"""Prices: the batch discount rule, the user-editable table, cost of results, the estimate."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from batch_workflows.errors import ConfigurationError, InvalidInputError
from batch_workflows.pricing import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    DEFAULT_PRICE_FILE,
    PriceTable,
    batch_price,
    cost_of_results,
    estimate_cost,
)
from batch_workflows.results import join_results


@pytest.mark.parametrize(
    ("base", "batch"),
    [("0.13", "0.07"), ("0.40", "0.20"), ("0.10", "0.05"), ("0", "0.00"), (0.13, "0.07"),
     (Decimal("2.50"), "1.25"), ("0.15", "0.08"), ("0.001", "0.01"), (10, "5.00")],
)  # fmt: skip
def test_batch_price_is_half_rounded_up_to_the_cent(base, batch) -> None:
    assert batch_price(base) == Decimal(batch)


def test_batch_price_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        batch_price("-1")
    with pytest.raises(ValueError):
        batch_price("abc")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_table_from_an_edited_file(tmp_path: Path) -> None:
    prices = write(tmp_path / "p.csv", "# my prices\nmodel,input_usd_per_million,output_usd_per_million\n"
                   "\n# embeddings\nacme/embed-1,0.13,0.40\nchat-9,1.00,3.00\n")  # fmt: skip
    table = PriceTable.load(prices)
    assert table.models == ["acme/embed-1", "chat-9"] and len(table) == 2
    price = table.get("acme/embed-1")
    assert (price.batch_input, price.batch_output) == (Decimal("0.07"), Decimal("0.20"))
    assert table.get("embed-1") is price  # without the org prefix
    assert table.get("chat-9-2024-07-18").model == "chat-9"  # without a date suffix
    assert "chat-9" in table and "chat-10" not in table and table.find("chat-10") is None
    with pytest.raises(ConfigurationError) as info:
        table.get("chat-10")
    assert "chat-10" in str(info.value) and str(prices) in str(info.value)
    # 1M in + 1M out at the batch rate (0.07 + 0.20) and at the base rate (0.13 + 0.40)
    assert table.cost("acme/embed-1", 1_000_000, 1_000_000) == Decimal("0.27")
    assert table.cost("acme/embed-1", 1_000_000, 1_000_000, batch=False) == Decimal("0.53")
    assert table.cost("chat-9", 500, 0) == Decimal("0.00025")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model,input_usd_per_million\nx,1\n", "missing: output_usd_per_million"),
        ("model,input_usd_per_million,output_usd_per_million\nx,1,abc\n", ":2: output_usd_per_million: not a number"),
        ("model,input_usd_per_million,output_usd_per_million\n# c\nx,1,1\nx,2,2\n", ":4: model 'x' already priced on line 3"),
        ("model,input_usd_per_million,output_usd_per_million\nx,-1,1\n", ":2: input_usd_per_million: negative"),
        ("# nothing\n", "no header"),
    ],
)  # fmt: skip
def test_bad_price_file_names_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        PriceTable.load(write(tmp_path / "bad.csv", text))
    assert "bad.csv" in str(info.value)


def test_missing_price_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read price file"):
        PriceTable.load(tmp_path / "nope.csv")


def test_shipped_table_has_the_documented_example() -> None:
    table = PriceTable.default()
    assert table.source == str(DEFAULT_PRICE_FILE)
    example = table.get("text-embedding-3-large")
    assert (example.input_per_million, example.output_per_million) == (Decimal("0.13"), Decimal("0.40"))
    assert (example.batch_input, example.batch_output) == (Decimal("0.07"), Decimal("0.20"))
    local = table.get("sentence-transformers/all-MiniLM-L6-v2")
    assert (local.batch_input, local.batch_output) == (Decimal("0.00"), Decimal("0.00"))
    assert table.get("gpt-4o-mini-2024-07-18").model == "gpt-4o-mini"


def _chat_ok(cid: str, model: str, prompt: int, completion: int) -> dict:
    body = {"model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"},
            "finish_reason": "stop"}], "usage": {"prompt_tokens": prompt,
            "completion_tokens": completion, "total_tokens": prompt + completion}}  # fmt: skip
    return {"id": "b", "custom_id": cid, "response": {"status_code": 200, "body": body}, "error": None}


def _jsonl(path: Path, objs: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in objs))
    return path


def test_cost_of_results_at_the_batch_rate(tmp_path: Path) -> None:
    reqs = _jsonl(tmp_path / "req.jsonl", [
        {"custom_id": c, "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}
        for c in ("a", "b", "c")])  # fmt: skip
    out = _jsonl(tmp_path / "out.jsonl", [_chat_ok("a", "big", 600_000, 200_000),
                                          _chat_ok("b", "big", 400_000, 800_000),
                                          _chat_ok("c", "small-2025-01-31", 1_000_000, 0)])  # fmt: skip
    prices = write(tmp_path / "p.csv", "model,input_usd_per_million,output_usd_per_million\n"
                   "big,0.13,0.40\nsmall,0.10,0.10\n")  # fmt: skip
    rs = join_results(reqs, out)
    report = cost_of_results(rs, PriceTable.load(prices))
    by_model = {m.model: m for m in report.models}
    assert by_model["big"].prompt_tokens == 1_000_000 and by_model["big"].completion_tokens == 1_000_000
    assert by_model["big"].requests == 2 and by_model["big"].usd == Decimal("0.27")
    assert by_model["small-2025-01-31"].usd == Decimal("0.05")
    assert report.usd == Decimal("0.32")
    assert cost_of_results([rs, rs], PriceTable.load(prices)).usd == Decimal("0.64")
    with pytest.raises(ConfigurationError, match="'big'"):
        cost_of_results(rs, PriceTable.load(write(tmp_path / "q.csv", "model,input_usd_per_million,"
                                                  "output_usd_per_million\nsmall,1,1\n")))  # fmt: skip


def test_estimate_before_submission(tmp_path: Path) -> None:
    reqs = _jsonl(tmp_path / "req.jsonl", [
        {"custom_id": "c1", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "big", "max_tokens": 100,
                  "messages": [{"role": "system", "content": "x" * 20},
                               {"role": "user", "content": [{"type": "text", "text": "y" * 20}]}]}},
        {"custom_id": "c2", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "big", "messages": [{"role": "user", "content": "z" * 7}]}},
        {"custom_id": "e1", "method": "POST", "url": "/v1/embeddings",
         "body": {"model": "emb", "input": ["a" * 8, "b" * 8]}},
        {"custom_id": "e2", "method": "POST", "url": "/v1/embeddings",
         "body": {"model": "emb", "input": [101, 102, 103]}},
    ])  # fmt: skip
    prices = write(tmp_path / "p.csv", "model,input_usd_per_million,output_usd_per_million\n"
                   "big,0.13,0.40\nemb,0.02,0\n")  # fmt: skip
    est = estimate_cost(reqs, PriceTable.load(prices))
    # chat: 40 chars -> 10 tokens, 7 chars -> 2; output 100 + the stated default
    assert est.models["big"].prompt_tokens == 12
    assert est.models["big"].completion_tokens == 100 + DEFAULT_MAX_OUTPUT_TOKENS
    # embeddings: 16 chars -> 4 tokens, plus 3 token ids; no output
    assert (est.models["emb"].prompt_tokens, est.models["emb"].completion_tokens) == (7, 0)
    assert (est.requests, est.input_tokens, est.output_tokens) == (4, 19, 356)
    expected = (12 * Decimal("0.07") + 356 * Decimal("0.20") + 7 * Decimal("0.01")) / 1_000_000
    assert est.usd == expected
    with pytest.raises(ConfigurationError, match="'emb'"):
        estimate_cost([reqs], PriceTable.load(write(tmp_path / "q.csv", "model,input_usd_per_million,"
                                                    "output_usd_per_million\nbig,1,1\n")))  # fmt: skip
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(reqs.read_bytes() + b"{oops\n")
    with pytest.raises(InvalidInputError, match=r"bad.jsonl:5"):
        estimate_cost(bad, PriceTable.load(prices))
