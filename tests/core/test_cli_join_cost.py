"""`batch-workflows join` and `batch-workflows cost`: the real console script as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow.parquet as pq

from batch_workflows.results import SCHEMA

SCRIPT = str(Path(sys.executable).parent / "batch-workflows")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def jsonl(path: Path, objs: list[dict]) -> None:
    path.write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in objs))


def request(cid: str) -> dict:
    return {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "meta-llama/Llama-3.3-70B-Instruct",
                     "messages": [{"role": "user", "content": f"hello {cid}"}]}}  # fmt: skip


def ok(cid: str, prompt: int = 600_000, completion: int = 400_000) -> dict:
    body = {"model": "meta-llama/Llama-3.3-70B-Instruct",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"hi {cid}"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion}}  # fmt: skip
    return {"id": f"br-{cid}", "custom_id": cid, "response": {"status_code": 200, "body": body},
            "error": None}  # fmt: skip


def failed(cid: str) -> dict:
    body = {"error": {"message": "server error", "type": "server_error", "code": None}}
    return {"id": f"br-{cid}", "custom_id": cid, "response": {"status_code": 500, "body": body},
            "error": None}  # fmt: skip


def expired(cid: str) -> dict:
    return {"id": f"br-{cid}", "custom_id": cid, "response": None,
            "error": {"code": "batch_expired", "message": "expired"}}  # fmt: skip


def test_join_all_succeeded_exits_0_and_cost_prices_it(tmp_path: Path) -> None:
    jsonl(tmp_path / "req.jsonl", [request("a"), request("b")])
    jsonl(tmp_path / "out.jsonl", [ok("b", 400_000, 600_000), ok("a")])
    result = cli("join", "req.jsonl", "out.jsonl", "--out", "res.parquet", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 requests -> res.parquet" in result.stdout
    assert "succeeded  2" in result.stdout and "missing    0" in result.stdout
    table = pq.read_table(tmp_path / "res.parquet")
    assert table.schema == SCHEMA and table.num_rows == 2
    assert sorted(table.column("content").to_pylist()) == ["hi a", "hi b"]

    # default table: Llama-3.3-70B at base $0.13 / $0.40 -> batch $0.07 / $0.20 per million
    cost = cli("cost", "res.parquet", cwd=tmp_path)
    assert cost.returncode == 0, cost.stdout + cost.stderr
    lines = cost.stdout.splitlines()
    assert "batch rate = 50 % of base, rounded up to the cent" in lines[0]
    model = next(x for x in lines if x.startswith("meta-llama/Llama-3.3-70B-Instruct"))
    assert model.split() == ["meta-llama/Llama-3.3-70B-Instruct", "2", "1000000", "1000000",
                             "$0.270000", "$0.530000"]  # fmt: skip
    total = next(x for x in lines if x.startswith("total"))
    assert total.split()[-2:] == ["$0.270000", "$0.530000"]


def test_join_reports_failures_and_exits_1_but_writes(tmp_path: Path) -> None:
    jsonl(tmp_path / "req.jsonl", [request(c) for c in ("a", "b", "c", "d")])
    jsonl(tmp_path / "out.jsonl", [failed("b"), ok("a"), ok("stray")])
    jsonl(tmp_path / "err.jsonl", [expired("c"), expired("a")])
    result = cli("join", "req.jsonl", "out.jsonl", "err.jsonl", "--out", "res.parquet", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    for expected in ("4 requests -> res.parquet", "succeeded  1", "failed     1", "errored    1",
                     "missing    1", "batch_expired  1", "server_error   1",
                     "unexpected: 1 result line(s) for custom_ids never submitted (e.g. stray)",
                     "duplicates: 1 extra result line(s)"):  # fmt: skip
        assert expected in out, out
    rows = {r["custom_id"]: r["status"] for r in pq.read_table(tmp_path / "res.parquet").to_pylist()}
    assert rows == {"a": "succeeded", "b": "failed", "c": "errored", "d": "missing"}


def test_join_corrupt_line_and_missing_file(tmp_path: Path) -> None:
    jsonl(tmp_path / "req.jsonl", [request("a")])
    (tmp_path / "out.jsonl").write_bytes(orjson.dumps(ok("a")) + b"\n{not json\n")
    result = cli("join", "req.jsonl", "out.jsonl", "--out", "res.parquet", cwd=tmp_path)
    assert result.returncode == 1
    assert "out.jsonl:2: not valid JSON" in result.stderr
    assert not (tmp_path / "res.parquet").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".join-")] == []
    missing = cli("join", "req.jsonl", "nope.jsonl", "--out", "res.parquet", cwd=tmp_path)
    assert missing.returncode == 2 and "nope.jsonl: no such file" in missing.stderr
    usage = cli("join", "req.jsonl", cwd=tmp_path)
    assert usage.returncode == 2


def test_cost_with_own_price_file_and_unknown_model(tmp_path: Path) -> None:
    jsonl(tmp_path / "req.jsonl", [request("a")])
    jsonl(tmp_path / "out.jsonl", [ok("a", 1_000_000, 0)])
    assert cli("join", "req.jsonl", "out.jsonl", "--out", "r1.parquet", cwd=tmp_path).returncode == 0
    assert cli("join", "req.jsonl", "out.jsonl", "--out", "r2.parquet", cwd=tmp_path).returncode == 0
    (tmp_path / "p.csv").write_text("# mine\nmodel,input_usd_per_million,output_usd_per_million\n"
                                    "Llama-3.3-70B-Instruct,1.00,2.00\n")  # fmt: skip
    cost = cli("cost", "r1.parquet", "r2.parquet", "--prices", "p.csv", cwd=tmp_path)
    assert cost.returncode == 0, cost.stderr
    total = next(x for x in cost.stdout.splitlines() if x.startswith("total"))
    assert total.split() == ["total", "2", "2000000", "0", "$1.000000", "$2.000000"]
    (tmp_path / "q.csv").write_text("model,input_usd_per_million,output_usd_per_million\nother,1,1\n")
    unknown = cli("cost", "r1.parquet", "--prices", "q.csv", cwd=tmp_path)
    assert unknown.returncode == 1
    assert "meta-llama/Llama-3.3-70B-Instruct" in unknown.stderr and "q.csv" in unknown.stderr
