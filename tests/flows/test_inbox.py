"""The inbox every file-fed flow shares: the plain scan against a cursor, and the Dagster
sensor factory over it (dynamic partitions added per file; a daily flow maps files to days)."""

from __future__ import annotations

import time
from pathlib import Path

from dagster import (
    DagsterInstance,
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    asset,
    build_sensor_context,
    materialize,
)

from batch_workflows.dagster import inbox_sensor
from batch_workflows.flows.inbox import run_key, scan_inbox, unknown_keys
from batch_workflows.flows.sources import ROW_SUFFIXES, SourceFile, list_source_files


def _file(name: str, version: str) -> SourceFile:
    return SourceFile(name, f"/in/{name}", 1, version)


def test_a_scan_names_new_and_changed_files_and_forgets_removed_ones():
    first = scan_inbox([_file("a.jsonl", "1"), _file("b.csv", "1")], None)
    assert [f.name for f in first.changed] == ["a.jsonl", "b.csv"]
    same = scan_inbox([_file("a.jsonl", "1"), _file("b.csv", "1")], first.cursor)
    assert same.changed == [] and same.cursor == first.cursor
    later = scan_inbox([_file("a.jsonl", "2"), _file("c.parquet", "1")], same.cursor)
    assert [f.name for f in later.changed] == ["a.jsonl", "c.parquet"]
    back = scan_inbox([_file("a.jsonl", "2"), _file("b.csv", "1"), _file("c.parquet", "1")],
                      later.cursor)
    assert [f.name for f in back.changed] == ["b.csv"]  # gone, then back: new again
    assert run_key(_file("a.jsonl", "2")) == "a.jsonl@2"
    assert unknown_keys(["x", "y", "x", "z"], ["y"]) == ["x", "z"]


def _asset(partitions_def):
    @asset(name="thing", partitions_def=partitions_def)
    def thing() -> None:
        return None

    return thing


def test_the_sensor_adds_dynamic_partitions_and_runs_each_new_file(tmp_path: Path):
    parts = DynamicPartitionsDefinition(name="things")
    (tmp_path / "one.jsonl").write_text("{}\n")

    def files() -> list[SourceFile]:
        return list_source_files(str(tmp_path), suffixes=ROW_SUFFIXES)

    sensor = inbox_sensor("things_inbox", parts, files, [_asset(parts)],
                          extra_partitions=lambda: ["shipped"])
    with DagsterInstance.ephemeral() as instance:
        tick = sensor(build_sensor_context(instance=instance))
        assert list(tick.dynamic_partitions_requests[0].partition_keys) == ["shipped", "one.jsonl"]
        assert [(r.partition_key, r.run_key) for r in tick.run_requests] == [
            ("one.jsonl", run_key(files()[0]))]
        instance.add_dynamic_partitions("things", ["shipped", "one.jsonl"])
        again = sensor(build_sensor_context(instance=instance, cursor=tick.cursor))
        assert again.run_requests == [] and again.dynamic_partitions_requests == []


def test_a_daily_flow_maps_files_to_days_and_adds_no_partitions(tmp_path: Path):
    days = DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC")
    for name in ("2024-03-01.jsonl", "2024-03-02.csv", "readme.jsonl"):
        (tmp_path / name).write_text("x\n")

    def day_of(file: SourceFile) -> str | None:
        stem = file.name.split(".")[0]
        return stem if stem[:2] == "20" else None  # not a day's backlog: no run

    sensor = inbox_sensor(
        "days_inbox", days, lambda: list_source_files(str(tmp_path), suffixes=ROW_SUFFIXES),
        [_asset(days)], partition_key=day_of)
    with DagsterInstance.ephemeral() as instance:
        tick = sensor(build_sensor_context(instance=instance))
    assert tick.dynamic_partitions_requests == []
    assert [r.partition_key for r in tick.run_requests] == ["2024-03-01", "2024-03-02"]


def test_a_partition_materialized_from_the_files_content_is_not_run_again(tmp_path: Path):
    """The demo (or the CLI, or the UI) materialized the file's partition: a sensor with a new
    cursor (a new daemon) starts no run for it; once the file changes, it does."""
    parts = DynamicPartitionsDefinition(name="things")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "one.jsonl").write_text("{}\n")
    (inbox / "two.jsonl").write_text("{}\n")
    thing = _asset(parts)

    def files() -> list[SourceFile]:
        return list_source_files(str(inbox), suffixes=ROW_SUFFIXES)

    sensor = inbox_sensor("things_inbox", parts, files, [thing])
    (tmp_path / "home").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        instance.add_dynamic_partitions("things", ["one.jsonl", "two.jsonl"])
        assert materialize([thing], instance=instance, partition_key="one.jsonl").success

        fresh = sensor(build_sensor_context(instance=instance))
        assert [r.partition_key for r in fresh.run_requests] == ["two.jsonl"]

        assert materialize([thing], instance=instance, partition_key="two.jsonl").success
        none = sensor(build_sensor_context(instance=instance))
        assert none.run_requests == []
        assert "one.jsonl, two.jsonl" in none.skip_reason.skip_message

        time.sleep(0.01)  # a later mtime even on coarse clocks
        (inbox / "one.jsonl").write_text('{"changed": true}\n')
        changed = sensor(build_sensor_context(instance=instance, cursor=none.cursor))
        assert [r.partition_key for r in changed.run_requests] == ["one.jsonl"]
