"""BatchInferenceComponent: the issue's YAML as written, loaded by Dagster's component loader,
materialized against the local engine (its real chat and embedding models), and its errors
raised before anything is uploaded."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from dagster import (
    AssetKey,
    DagsterInstance,
    Definitions,
    build_schedule_context,
    materialize,
)
from dagster.components.testing import create_defs_folder_sandbox
from support.lifecycle_server import shared_server
from support.triage import TRIAGE

from batch_workflows.dagster import ArtifactStore, BatchInferenceComponent, BatchResource
from batch_workflows.errors import ConfigurationError, InvalidInputError

MODEL = "SmolLM2-135M-Instruct"  # the local engine's chat model
TICKETS = [
    {"ticket_id": "T-1", "subject": "Charged twice", "body": "My card was billed two times."},
    {"ticket_id": "T-2", "subject": "App crashes", "body": "It closes when I tap save."},
    {"ticket_id": "T-3", "subject": "Password", "body": "I cannot log in to my account."},
]


def _csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(base_uri=str(tmp_path / "artifacts"))


def _resources(store: ArtifactStore) -> dict:
    """The shared local engine (its real models) and `store`."""
    return {"batch": BatchResource(provider="local", base_url=shared_server().base_url,
                                   blocking=True, poll_interval_seconds=0.2),
            "artifacts": store}


def _load(yaml_text: str):
    """The definitions of one defs.yaml, loaded the way `dg` and Dagster load a defs folder."""
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.defs_folder_path / "flow"
        path.mkdir(parents=True)
        (path / "defs.yaml").write_text(yaml_text)
        with sandbox.build_all_defs() as defs:
            return defs


def test_the_issues_yaml_loads_as_written_with_its_keys_sensors_and_checks(tmp_path):
    defs = _load(TRIAGE.format(model=MODEL, uri=str(tmp_path / "tickets")))
    keys = {a.key for a in defs.assets}
    assert keys == {AssetKey(["support", "ticket_triage", k])
                    for k in ("requests", "batch", "results", "table")}
    sensors = {s.name for s in defs.sensors}
    assert sensors == {"support__ticket_triage_batch_sensor", "support__ticket_triage_inbox_sensor"}
    table = next(a for a in defs.assets if a.key.path[-1] == "table")
    assert {c.name for c in table.check_specs} == {"rows_accounted", "error_rate",
                                                   "answers_parse"}
    batch = next(a for a in defs.assets if a.key.path[-1] == "batch")
    assert batch.op.pool == "batch_submit_batch"


def test_a_partition_runs_end_to_end_and_its_table_has_every_row(tmp_path, store):
    inbox = tmp_path / "tickets"
    _csv(inbox / "2025-06-01.csv", TICKETS)
    defs = _load(TRIAGE.format(model=MODEL, uri=str(inbox)))
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("support__ticket_triage__files", ["2025-06-01.csv"])
        run = materialize(list(defs.assets), instance=instance, partition_key="2025-06-01.csv",
                          resources=_resources(store))
        assert run.success
        checks = {e.check_name: e.passed for e in run.get_asset_check_evaluations()}
        meta = run.asset_materializations_for_node("support__ticket_triage__table")[0].metadata
    assert checks["rows_accounted"] and checks["answers_parse"]
    table = pq.read_table(store.uri("support/ticket_triage/2025-06-01.csv/table.parquet"))
    rows = table.to_pylist()
    assert [r["ticket_id"] for r in rows] == ["T-1", "T-2", "T-3"]
    assert {r["subject"] for r in rows} == {t["subject"] for t in TICKETS}
    for row in rows:  # structured output: every answer parses into its enum
        assert row["status"] == "succeeded", row
        assert row["label"] in ("billing", "bug", "account", "other")
        assert json.loads(row["answer"])["label"] == row["label"]
        assert row["source_line"] >= 2 and row["prompt_tokens"] > 0
    assert meta["rows"].value == 3 and meta["succeeded"].value == 3
    assert meta["parse_rate"].value == 1.0


def test_embeddings_fill_the_table_with_vectors(tmp_path, store):
    docs = tmp_path / "catalog"
    docs.mkdir()
    (docs / "products.jsonl").write_text("".join(json.dumps(d) + "\n" for d in [
        {"sku": "A1", "title": "Kettle", "description": "Boils water fast.", "price": 19.5},
        {"sku": "B2", "title": "Lamp", "description": "A warm reading light.", "price": 30},
    ]))
    component = BatchInferenceComponent.resolve_from_dict({
        "name": "catalog", "key_prefix": ["shop"], "endpoint": "/v1/embeddings",
        "model": "all-MiniLM-L6-v2",
        "source": {"uri": str(docs / "products.jsonl"), "format": "jsonl", "id_field": "sku"},
        "request": {"input": "{title} {description}"},
    })
    defs = component.build_defs(None)
    with DagsterInstance.ephemeral() as instance:
        assert materialize(list(defs.assets), instance=instance,
                           resources=_resources(store)).success
    rows = pq.read_table(store.uri("shop/catalog/_all/table.parquet")).to_pylist()
    assert [r["sku"] for r in rows] == ["A1", "B2"]
    assert all(len(r["embedding"]) == 384 and r["status"] == "succeeded" for r in rows)
    assert [r["price"] for r in rows] == [19.5, 30.0]  # ints and floats: one float column


def test_a_missing_column_names_file_row_and_field_before_anything_is_uploaded(tmp_path, store):
    inbox = tmp_path / "tickets"
    bad = [dict(TICKETS[0]), {"ticket_id": "T-9", "subject": "", "body": "x"}]
    _csv(inbox / "day.csv", [{k: v for k, v in r.items() if k != "body"} for r in bad])
    defs = _load(TRIAGE.format(model=MODEL, uri=str(inbox)))
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("support__ticket_triage__files", ["day.csv"])
        with pytest.raises(InvalidInputError) as err:
            materialize(list(defs.assets), instance=instance, partition_key="day.csv",
                        resources=_resources(store))
    assert f"{inbox / 'day.csv'}:1: body: column missing" in str(err.value)
    assert not store.list("support/ticket_triage/day.csv/")  # no shards, nothing submitted


@pytest.mark.parametrize(("change", "message"), [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "array"}}}}, "expected an object schema"),
    ({"messages": []}, "needs at least one message"),
    ({"body": {"model": "other"}}, "model"),
])
def test_a_bad_request_fails_when_the_yaml_loads(tmp_path, change, message):
    attributes = yaml.safe_load(TRIAGE.format(model=MODEL, uri=str(tmp_path)))["attributes"]
    attributes["request"].update(change)
    with pytest.raises(ConfigurationError, match=message):
        BatchInferenceComponent.resolve_from_dict(attributes).build_defs(None)


def test_scaffolding_writes_a_defs_yaml_that_loads():
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(component_cls=BatchInferenceComponent,
                                          defs_path="ticket_triage")
        written = yaml.safe_load((path / "defs.yaml").read_text())
        assert written["type"].endswith("BatchInferenceComponent")  # the module it is defined in
        assert written["attributes"]["name"] == "ticket_triage"
        with sandbox.build_all_defs() as defs:
            assert AssetKey(["ticket_triage", "table"]) in {a.key for a in defs.assets}


def test_the_resources_bind_in_yaml_with_secrets_left_to_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PROVIDER_KEY", "sk-not-in-the-config")
    resources = """
type: batch_workflows.dagster.BatchResourceComponent
attributes:
  resource_key: batch
  provider: openai
  api_key_env_var: PROVIDER_KEY
  settings: {max_cost_usd: 50, max_attempts: 2}
---
type: batch_workflows.dagster.ArtifactStoreComponent
attributes:
  base_uri: s3://team-bucket/batch-workflows
"""
    with create_defs_folder_sandbox() as sandbox:
        (sandbox.defs_folder_path / "resources").mkdir()
        (sandbox.defs_folder_path / "resources" / "defs.yaml").write_text(resources)
        (sandbox.defs_folder_path / "flow").mkdir()
        (sandbox.defs_folder_path / "flow" / "defs.yaml").write_text(
            TRIAGE.format(model=MODEL, uri=str(tmp_path)))
        with sandbox.build_all_defs() as defs:
            batch, store = defs.resources["batch"], defs.resources["artifacts"]
            assert len(defs.resolve_all_asset_keys()) == 4  # the flow and its resources load
    assert batch.provider == "openai" and batch.max_cost_usd == 50 and batch.max_attempts == 2
    assert batch.api_key.env_var_name == "PROVIDER_KEY"  # an EnvVar: Dagster resolves it
    assert "sk-not-in-the-config" not in repr(batch) and batch.resolved_api_key == (
        "sk-not-in-the-config")
    assert store.base_uri == "s3://team-bucket/batch-workflows"


def test_daily_partitions_take_a_schedule_and_per_file_ones_refuse_it(tmp_path):
    attributes = yaml.safe_load(TRIAGE.format(model=MODEL, uri=str(tmp_path)))["attributes"]
    attributes["partitions"] = {"type": "daily", "start_date": "2025-01-01",
                                "file": "{partition_key}.csv"}
    attributes["schedule"] = {"cron": "0 2 * * *"}
    defs = BatchInferenceComponent.resolve_from_dict(attributes).build_defs(None)
    (schedule,) = defs.schedules
    assert schedule.name == "support__ticket_triage_schedule"
    assert schedule.cron_schedule == "0 2 * * *"
    at_two = datetime(2025, 3, 5, 2, 0, tzinfo=UTC)
    repo = Definitions.merge(defs, Definitions(resources={
        "batch": BatchResource(provider="openai"),
        "artifacts": ArtifactStore(base_uri=str(tmp_path))})).get_repository_def()
    (request,) = schedule.evaluate_tick(build_schedule_context(
        scheduled_execution_time=at_two, repository_def=repo)).run_requests
    assert request.partition_key == "2025-03-04"  # the day that just ended
    attributes["partitions"] = {"type": "per_file"}
    with pytest.raises(ConfigurationError, match="schedule: needs daily partitions"):
        BatchInferenceComponent.resolve_from_dict(attributes).build_defs(None)


def test_a_partition_whose_file_is_absent_says_which_file(tmp_path, store):
    attributes = yaml.safe_load(TRIAGE.format(model=MODEL, uri=str(tmp_path)))["attributes"]
    attributes["partitions"] = {"type": "static", "keys": ["emea"], "file": "{partition_key}.csv"}
    defs = BatchInferenceComponent.resolve_from_dict(attributes).build_defs(None)
    with DagsterInstance.ephemeral() as instance, pytest.raises(
            ConfigurationError, match=rf"{tmp_path / 'emea.csv'}: no such file"):
        materialize(list(defs.assets), instance=instance, partition_key="emea",
                    resources=_resources(store))
