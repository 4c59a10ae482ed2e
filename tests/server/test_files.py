"""Files API through the official openai SDK: CRUD, pagination, limits, schema shapes."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from .helpers import assert_schema, write_requests


def test_upload_retrieve_download_delete(client: openai.OpenAI, server, tmp_path: Path) -> None:
    src = write_requests(tmp_path / "input.jsonl", 5)
    created = client.files.create(file=src.open("rb"), purpose="batch")
    assert created.id.startswith("file-") and created.purpose == "batch"
    assert created.bytes == src.stat().st_size and created.filename == "input.jsonl"
    assert client.files.retrieve(created.id).id == created.id
    assert client.files.content(created.id).read() == src.read_bytes()
    # The body sits under an opaque random id, not under the client's file name.
    assert (server.data_dir / "files" / created.id).read_bytes() == src.read_bytes()
    assert not list(server.data_dir.rglob("input.jsonl"))
    deleted = client.files.delete(created.id)
    assert deleted.deleted and deleted.id == created.id
    assert not (server.data_dir / "files" / created.id).exists()
    with pytest.raises(openai.NotFoundError) as info:
        client.files.retrieve(created.id)
    assert info.value.body["type"] == "invalid_request_error"


def test_list_newest_first_with_pagination(client: openai.OpenAI, tmp_path: Path) -> None:
    src = write_requests(tmp_path / "page.jsonl", 1)
    ids = [client.files.create(file=src.open("rb"), purpose="batch").id for _ in range(5)]
    page = client.files.list(limit=2)
    assert [f.id for f in page.data] == ids[::-1][:2]
    assert page.has_more
    walked = [f.id for f in client.files.list(limit=2)]  # the SDK follows `after` itself
    assert walked[:5] == ids[::-1]
    assert all(f.purpose == "batch" for f in client.files.list(purpose="batch"))
    assert not {f.id for f in client.files.list(purpose="batch_output")} & set(ids)


def test_download_supports_ranges(client: openai.OpenAI, server, tmp_path: Path) -> None:
    src = write_requests(tmp_path / "range.jsonl", 20)
    file_id = client.files.create(file=src.open("rb"), purpose="batch").id
    answer = httpx.get(f"{server.base_url}/files/{file_id}/content",
                       headers={"Range": "bytes=10-19"})
    assert answer.status_code == 206 and answer.content == src.read_bytes()[10:20]


def test_upload_over_limit_is_413_and_leaves_nothing(client: openai.OpenAI, server,
                                                     tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    big.write_bytes(b"x" * 300_000)  # the fixture's server takes at most 200,000 bytes
    before = sorted(p.name for p in (server.data_dir / "files").iterdir())
    with pytest.raises(openai.APIStatusError) as info:
        client.files.create(file=big.open("rb"), purpose="batch")
    assert info.value.status_code == 413
    assert_schema(info.value.response.json(), "ErrorResponse")
    assert sorted(p.name for p in (server.data_dir / "files").iterdir()) == before
    assert not list((server.data_dir / "tmp").iterdir())


def test_bad_purpose_and_missing_file_part(client: openai.OpenAI, server, tmp_path: Path) -> None:
    src = write_requests(tmp_path / "p.jsonl", 1)
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=src.open("rb"), purpose="fine-tune")
    assert info.value.body["param"] == "purpose"
    answer = httpx.post(f"{server.base_url}/files", data={"purpose": "batch"},
                        files={"other": ("x", b"1")})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "file"
    assert not list((server.data_dir / "tmp").iterdir())


def test_file_objects_match_openai_schemas(client: openai.OpenAI, server, tmp_path: Path) -> None:
    src = write_requests(tmp_path / "schema.jsonl", 2)
    base, headers = server.base_url, server.headers()
    with src.open("rb") as handle:
        created = httpx.post(f"{base}/files", headers=headers, data={"purpose": "batch"},
                             files={"file": ("schema.jsonl", handle)})
    assert created.status_code == 200
    assert_schema(created.json(), "OpenAIFile")
    file_id = created.json()["id"]
    assert_schema(httpx.get(f"{base}/files/{file_id}", headers=headers).json(), "OpenAIFile")
    assert_schema(httpx.get(f"{base}/files", headers=headers).json(), "ListFilesResponse")
    missing = httpx.get(f"{base}/files/file-0000", headers=headers)
    assert missing.status_code == 404
    assert_schema(missing.json(), "ErrorResponse")
    deleted = httpx.delete(f"{base}/files/{file_id}", headers=headers)
    assert_schema(deleted.json(), "DeleteFileResponse")


def test_path_tricks_never_reach_the_disk(server) -> None:
    for bad in ("..%2F..%2Fetc%2Fpasswd", "file-..", "%2e%2e"):
        answer = httpx.get(f"{server.base_url}/files/{bad}/content")
        assert answer.status_code == 404
        assert answer.json()["error"]["message"]
