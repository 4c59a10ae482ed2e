"""Collecting an attempt: download its output and error files, join them with its requests,
select what did not succeed for the next attempt, and merge the attempts into one result.

Every submitted custom_id gets exactly one row (succeeded, failed, errored or missing); the
requests to resubmit and the merge stream, so memory does not grow with the requests.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batch_workflows.errors import ConfigurationError
from batch_workflows.lifecycle.failures import BatchFailure, resubmits_request
from batch_workflows.lifecycle.layout import raw_name
from batch_workflows.lifecycle.manifests import JoinFigures, SubmissionManifest, Summary
from batch_workflows.lifecycle.provider import BatchAPI, logger
from batch_workflows.parquet import open_parquet
from batch_workflows.pricing import cost_of_results
from batch_workflows.requests import iter_requests, write_shards
from batch_workflows.results import SUCCEEDED, ResultSet, join_results
from batch_workflows.spill import HashSpill, partitions_for
from batch_workflows.wire import is_terminal

# Request bytes per partition of the retry selection: one partition's ids fit in memory.
RETRY_PARTITION_BYTES = 32 * 1024 * 1024
_RETRY_ROWS = 8192  # request lines per spilled batch
_IDS = pa.schema([("custom_id", pa.string())])
_LINES = pa.schema([("custom_id", pa.string()), ("line", pa.binary())])


@dataclass
class AttemptResult:
    """The joined results of one attempt."""

    attempt: int
    path: str
    counts: dict[str, int]
    unfinished: int
    output_files: list[str]
    error_files: list[str]
    figures: JoinFigures = field(default_factory=JoinFigures)

    @property
    def unexpected(self) -> int:
        return self.figures.unexpected

    @property
    def duplicates(self) -> int:
        return self.figures.duplicates


def download_outputs(
    client: BatchAPI, batches: Iterable[Mapping[str, Any]], dest_dir: str | os.PathLike[str]
) -> tuple[list[str], list[str]]:
    """Download each batch's output and error file (when it has one) into `dest_dir`.

    Files are named by the batch's position (``shard-00000-output.jsonl``), never by a string
    the provider chose.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    outputs, errors = [], []
    for n, batch in enumerate(batches):
        for kind, bucket in (("output", outputs), ("error", errors)):
            file_id = batch.get(f"{kind}_file_id")
            if not file_id:
                continue
            path = dest / raw_name(n, kind)
            if not path.exists():
                client.download_file(file_id, path)
            bucket.append(str(path))
    return outputs, errors


def collect(
    client: BatchAPI,
    manifest: SubmissionManifest,
    batches: Mapping[str, Mapping],
    request_files: Sequence[str | os.PathLike[str]],
    work_dir: str | os.PathLike[str],
    failures: Mapping[str, BatchFailure] | None = None,
) -> AttemptResult:
    """Download an attempt's output/error files and join them with its requests on custom_id.

    Every submitted custom_id gets exactly one row (succeeded, failed, errored or missing) in
    ``<work_dir>/results.parquet``. The requests of a batch that failed as a whole and left no
    file (`failures`, by batch id) are ``errored`` with the batch's code and reason
    (``write_failure_lines``), not ``missing`` without one.
    """
    work = Path(work_dir)
    ordered = [batches[bid] for bid in manifest.batch_ids]
    not_done = [b["id"] for b in ordered if not is_terminal(b)]
    if not_done:
        raise ConfigurationError(f"cannot collect: batches not terminal yet: {not_done[:5]}")
    outputs, errors = download_outputs(client, ordered, work / "raw")
    for n, batch in enumerate(ordered):
        failure = (failures or {}).get(batch["id"])
        if failure is not None and not batch.get("output_file_id") and not batch.get("error_file_id"):
            dest = work / "raw" / f"shard-{n:05d}-batch-failure.jsonl"
            errors.append(str(write_failure_lines(failure, request_files[n], dest)))
    out_path = work / "results.parquet"
    result = join_results([str(p) for p in request_files], outputs, errors, out_path=str(out_path))
    counts = {k: v for k, v in result.counts.items() if v}
    unfinished = sum(v for k, v in counts.items() if k != SUCCEEDED)
    figures = JoinFigures(result.unexpected, result.duplicates, list(result.unexpected_sample))
    return AttemptResult(manifest.attempt, str(out_path), counts, unfinished, outputs, errors,
                         figures)


def write_failure_lines(failure: BatchFailure, request_file: str | os.PathLike[str],
                        dest: str | os.PathLike[str]) -> Path:
    """An error file for a batch that failed as a whole: one line per request of its shard,
    with the batch's code and the description naming batch, status, line and message."""
    error = orjson.dumps({"code": failure.code, "message": failure.describe()})
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        for request in iter_requests(request_file):
            cid = orjson.dumps(str(request.get("custom_id", "")))
            out.write(b'{"id":null,"custom_id":' + cid + b',"response":null,"error":' + error
                      + b"}\n")
    return dest


def iter_unfinished_ids(results_path: str | os.PathLike[str]) -> Iterator[str]:
    """custom_ids to resubmit from a results Parquet, streamed: not `succeeded`, and not failed
    with an error the failure table says fails again (``failures.resubmits_request``)."""
    columns = ["custom_id", "status", "error_code"]
    for batch in open_parquet(results_path).iter_batches(columns=columns):
        keep = pc.not_equal(batch.column("status"), SUCCEEDED)
        ids = batch.column("custom_id").filter(keep).to_pylist()
        codes = batch.column("error_code").filter(keep).to_pylist()
        yield from (cid for cid, code in zip(ids, codes, strict=True)
                    if resubmits_request(code))


def iter_unfinished_requests(
    request_files: Sequence[str | os.PathLike[str]],
    results_path: str | os.PathLike[str],
    work_dir: str | os.PathLike[str] | None = None,
    *,
    partition_bytes: int = RETRY_PARTITION_BYTES,
) -> Iterator[dict]:
    """The request lines whose custom_id did not succeed in `results_path`, streamed.

    Memory stays flat: unless the request files are smaller than `partition_bytes`, the
    unfinished ids and the request lines are first spread over a ``HashSpill`` by custom_id,
    then each partition is matched on its own, holding only that partition's ids. Output
    order: by partition, file order inside one.
    """
    files = [os.fspath(p) for p in request_files]
    n = partitions_for(sum(os.path.getsize(p) for p in files), partition_bytes)
    if n == 1:  # small enough: the ids of these requests fit in memory as they are
        wanted = set(iter_unfinished_ids(results_path))
        if wanted:
            for path in files:
                yield from (r for r in iter_requests(path) if r.get("custom_id") in wanted)
        return
    with HashSpill.temporary(n, work_dir, ".retry-") as spill:
        unfinished = 0
        for ids in _chunks(iter_unfinished_ids(results_path)):
            unfinished += len(ids)
            spill.add("res", [pa.record_batch([pa.array(ids, pa.string())], schema=_IDS)])
        if not unfinished:
            return
        for path in files:
            for requests in _chunks(iter_requests(path)):
                spill.add("req", [_line_batch(requests)])
        spill.close()
        for i in range(n):
            wanted = set(spill.read("res", i, _IDS).column("custom_id").to_pylist())
            for batch in spill.stream("req", i):
                if not wanted:
                    continue  # stream() still removes the partition's file
                for cid, line in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(),
                                     strict=True):
                    if cid in wanted:
                        yield orjson.loads(line)


def _chunks(items: Iterable[Any]) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == _RETRY_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _line_batch(requests: list[dict]) -> pa.RecordBatch:
    ids = [str(r.get("custom_id", "")) for r in requests]
    lines = [orjson.dumps(r) for r in requests]
    return pa.record_batch([pa.array(ids, pa.string()), pa.array(lines, pa.binary())],
                           schema=_LINES)


def write_retry_shards(
    request_files: Sequence[str | os.PathLike[str]],
    results_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    profile: Any,
    endpoint: str | None = None,
    *,
    partition_bytes: int = RETRY_PARTITION_BYTES,
    max_tokens_per_file: int | None = None,
) -> Any:
    """Write shards holding exactly the requests that did not succeed in `results_path`.

    Returns the ShardManifest; call it only when something is unfinished (write_shards refuses
    an empty input). Shards follow `profile`'s per-file limits (and `max_tokens_per_file`, a
    quota's shard cap); memory stays flat.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unfinished = iter_unfinished_requests(request_files, results_path, out.parent,
                                          partition_bytes=partition_bytes)
    return write_shards(unfinished, str(out), profile, endpoint=endpoint, prefix="retry",
                        max_tokens_per_file=max_tokens_per_file)


def merge_attempts(
    attempt_paths: Sequence[str | os.PathLike[str]], out_path: str | os.PathLike[str]
) -> None:
    """One results Parquet from the attempts of a submission, streamed by row group.

    Attempt n+1 holds exactly the requests that did not succeed in attempt n, so each custom_id
    is taken from the attempt where it succeeded, or from the last attempt.
    """
    if not attempt_paths:
        raise ConfigurationError("merge_attempts needs at least one attempt")
    last = len(attempt_paths) - 1
    writer = None
    try:
        for n, path in enumerate(attempt_paths):
            pf = open_parquet(path)
            if writer is None:
                writer = pq.ParquetWriter(str(out_path), pf.schema_arrow)
            for batch in pf.iter_batches(batch_size=65536):
                if n != last:
                    batch = batch.filter(pc.equal(batch.column("status"), SUCCEEDED))
                if batch.num_rows:
                    writer.write_batch(
                        batch.cast(pf.schema_arrow) if batch.schema != pf.schema_arrow else batch
                    )
    finally:
        if writer is not None:
            writer.close()


def summarize(
    final_path: str | os.PathLike[str],
    attempt_paths: Sequence[str | os.PathLike[str]],
    price_table: Any | None = None,
    *,
    figures: JoinFigures | None = None,
) -> Summary:
    """Figures of a submission: `ResultSet.from_parquet` and `pricing.cost_of_results`.

    `figures` are the join's counts over all attempts (not in the rows).
    """
    figures = figures or JoinFigures()
    final = ResultSet.from_parquet(final_path)
    billed = [ResultSet.from_parquet(p) for p in attempt_paths]
    by_model: dict[str, dict[str, int]] = {}
    for rs in billed:
        for model, usage in rs.models.items():
            into = by_model.setdefault(model, {})
            for k, v in usage.items():
                into[k] = into.get(k, 0) + int(v)
    cost: Decimal | None = None
    if price_table is not None:
        try:
            cost = cost_of_results(billed, price_table).usd
        except (LookupError, ValueError, ConfigurationError) as exc:
            logger.warning("cost left out: %s", exc)
    return Summary(
        rows=final.total,
        counts={k: v for k, v in final.counts.items() if v},
        error_breakdown=final.error_breakdown,
        prompt_tokens=sum(u.get("prompt_tokens", 0) for u in by_model.values()),
        completion_tokens=sum(u.get("completion_tokens", 0) for u in by_model.values()),
        total_tokens=sum(u.get("total_tokens", 0) for u in by_model.values()),
        cost_usd=cost,
        attempts=len(attempt_paths),
        tokens_by_model=by_model,
        unexpected=figures.unexpected,
        duplicates=figures.duplicates,
        unexpected_sample=list(figures.unexpected_sample),
    )


def unfinished_sample(path: str | os.PathLike[str], limit: int = 20) -> list[dict[str, Any]]:
    """The first `limit` rows that did not succeed (reads row groups until it has them)."""
    rows: list[dict[str, Any]] = []
    columns = ["custom_id", "status", "error_code", "error_message"]
    for batch in open_parquet(path).iter_batches(columns=columns, batch_size=8192):
        keep = batch.filter(pc.not_equal(batch.column("status"), SUCCEEDED))
        rows.extend(keep.slice(0, limit - len(rows)).to_pylist())
        if len(rows) >= limit:
            break
    return rows
