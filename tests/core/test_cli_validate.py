"""The real `batch-workflows` console script, run as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson

from batch_workflows.profiles import CHAT

SCRIPT = str(Path(sys.executable).parent / "batch-workflows")
BOM = b"\xef\xbb\xbf"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def line(i: int, **changes: object) -> bytes:
    req = {
        "custom_id": f"r{i}",
        "method": "POST",
        "url": CHAT,
        "body": {"model": "m1", "messages": [{"role": "user", "content": f"hello {i}"}]},
    }
    req.update(changes)
    return orjson.dumps(req)


def test_valid_files_exit_0_with_one_summary_line_each(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(BOM + b"\r\n".join(line(i) for i in range(3)) + b"\r\n")
    (tmp_path / "b.jsonl").write_bytes(b"\n".join(line(i) for i in range(2)))
    result = cli("validate", "a.jsonl", "b.jsonl", "--provider", "nebius", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout.splitlines()
    assert len(out) == 2
    assert out[0].startswith("a.jsonl: ok, 3 request(s)")
    assert out[1].startswith("b.jsonl: ok, 2 request(s)")


def test_invalid_file_exits_1_with_exactly_one_line_per_problem(tmp_path: Path) -> None:
    lines = [line(1), line(2, method="GET"), b"", b"{not json", line(1), line(6, url="/v1/x")]
    (tmp_path / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "good.jsonl").write_bytes(line(1) + b"\n")
    result = cli("validate", "good.jsonl", "bad.jsonl", cwd=tmp_path)
    assert result.returncode == 1
    out = result.stdout.splitlines()
    assert out[0] == 'bad.jsonl:2: method: must be "POST" (got "GET")'
    assert out[1] == "bad.jsonl:3: blank line"
    assert out[2].startswith("bad.jsonl:4: not valid JSON")
    assert out[3] == 'bad.jsonl:5: custom_id: duplicate custom_id "r1" (first used on line 1)'
    assert out[4].startswith('bad.jsonl:6: url: "/v1/x" is not an endpoint of provider "local"')
    assert len(out) == 5


def test_max_problems_caps_the_listing(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_bytes(b"[]\n" * 20)
    result = cli("validate", "bad.jsonl", "--max-problems", "4", cwd=tmp_path)
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 4
    assert "truncated" in result.stderr


def test_endpoint_option(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(line(1) + b"\n")
    result = cli("validate", "a.jsonl", "--endpoint", "/v1/embeddings", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.startswith("a.jsonl:1: url: ")


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(line(1) + b"\n")
    missing = cli("validate", "a.jsonl", "missing.jsonl", cwd=tmp_path)
    assert missing.returncode == 2
    assert "cannot read missing.jsonl: no such file" in missing.stderr
    assert missing.stdout == ""
    assert cli("validate", str(tmp_path), cwd=tmp_path).returncode == 2
    provider = cli("validate", "a.jsonl", "--provider", "acme", cwd=tmp_path)
    assert provider.returncode == 2 and "acme" in provider.stderr
    assert cli("validate", cwd=tmp_path).returncode == 2
    endpoint = cli("validate", "a.jsonl", "--endpoint", "/v1/moderations", cwd=tmp_path)
    assert endpoint.returncode == 2


def test_shard_command_writes_shards_and_manifest(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(line(i) for i in range(7)) + b"\n")
    result = cli(
        "shard",
        "in.jsonl",
        "--provider",
        "openai",
        "--out",
        "out",
        "--max-requests",
        "3",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [s["lines"] for s in manifest["shards"]] == [3, 3, 1]
    assert manifest["total_requests"] == 7
    assert "3 shard(s), 7 request(s)" in result.stdout.splitlines()[-1]


def test_shard_command_refuses_invalid_input(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(line(1) + b"\n" + line(2, method="PUT") + b"\n")
    result = cli("shard", "in.jsonl", "--provider", "openai", "--out", "out", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == ['in.jsonl:2: method: must be "POST" (got "PUT")']
    assert not (tmp_path / "out").exists()
