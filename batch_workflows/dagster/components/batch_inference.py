"""``BatchInferenceComponent``: a batch inference flow declared in YAML, no Python.

Rows of a folder, an ``s3://`` prefix or a file (JSONL, CSV, Parquet) become one request each
through a template with ``{column}`` placeholders; the lifecycle submits, tracks, collects and
resubmits them; the output table has one row per source row with the answer (its JSON fields
as columns) or the vector, its status and reason::

    type: batch_workflows.dagster.BatchInferenceComponent
    attributes:
      name: ticket_triage
      key_prefix: [support]
      model: gpt-4o-mini
      source: {uri: "s3://support-lake/tickets/", format: csv, id_field: ticket_id}
      partitions: {type: per_file}
      request:
        messages:
          - {role: system, content: "Classify the support ticket."}
          - {role: user, content: "Subject: {subject}\\n\\n{body}"}
        body: {temperature: 0, max_tokens: 32}
      output: {type: table, parse: json}

It defines ``<prefix>/<name>/requests``, ``…/batch``, ``…/results`` (the lifecycle) and
``…/table`` (the output, Parquet in the artifact store) with their checks, the tracking sensor
(its results runs carry on to the table), an inbox sensor for ``per_file`` partitions, and a
schedule when one is given. Resources are bound by key (`batch_resource_key`,
`artifacts_resource_key`). Subclass it where Python is needed: `request_body` (a row's request
body) and `output_spec` are the hooks.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import dagster as dg
import orjson
from dagster import AssetExecutionContext
from pydantic import Field

from batch_workflows.dagster.inbox import inbox_sensor
from batch_workflows.dagster.lifecycle.factory import BatchLifecycle, batch_lifecycle
from batch_workflows.dagster.lifecycle.results import fetch_results
from batch_workflows.errors import ConfigurationError
from batch_workflows.flows.sources import SourceFile
from batch_workflows.flows.table import (
    FORMATS,
    OutputSpec,
    RequestTemplate,
    RowTable,
    Source,
    TableReport,
    build_requests,
    write_table,
)
from batch_workflows.lifecycle import PartitionLayout
from batch_workflows.profiles import CHAT, EMBEDDINGS
from batch_workflows.s3 import s3_client_for

ROWS_FILE, COLUMNS_FILE, TABLE_FILE = "rows.parquet", "rows.json", "table.parquet"
CHECK_ROWS, CHECK_ERRORS, CHECK_PARSE = "rows_accounted", "error_rate", "answers_parse"


# -- the YAML's shape -------------------------------------------------------------------------
class SourceModel(dg.Model, dg.Resolvable):
    """Where the rows are: a folder, an ``s3://`` prefix or one file."""

    uri: str = Field(description="A folder, an s3:// prefix, or one file.")
    format: Literal["jsonl", "csv", "parquet"] = Field(default="jsonl")
    id_field: str | None = Field(
        default=None, description="The column whose value is each row's id (its custom_id); "
                                  "none: the row's line.")


class PerFilePartitions(dg.Model, dg.Resolvable):
    """One dynamic partition per file of the source; an inbox sensor adds and runs new files."""

    type: Literal["per_file"] = "per_file"


class DailyPartitions(dg.Model, dg.Resolvable):
    """One partition per day from `start_date`; the day's file is `file` under the source."""

    type: Literal["daily"] = "daily"
    start_date: str
    file: str = Field(default="{partition_key}.jsonl",
                      description="The day's file under source.uri; {partition_key} is the day.")
    timezone: str = "UTC"
    end_offset: int = 0


class StaticPartitions(dg.Model, dg.Resolvable):
    """A fixed list of partitions; each one's file is `file` under the source."""

    type: Literal["static"] = "static"
    keys: list[str]
    file: str = Field(default="{partition_key}.jsonl",
                      description="A partition's file under source.uri; {partition_key} is it.")


class MessageModel(dg.Model, dg.Resolvable):
    role: str
    content: str


class RequestModel(dg.Model, dg.Resolvable):
    """One request per row: chat `messages`, or embeddings `input`, with {column} placeholders."""

    messages: list[MessageModel] = Field(default_factory=list)
    input: str | None = None
    body: dict[str, Any] = Field(default_factory=dict,
                                 description="Other body parameters, sent as written.")
    response_format: dict[str, Any] | None = Field(default=None, description="Sent as written.")


class OutputModel(dg.Model, dg.Resolvable):
    type: Literal["table"] = "table"
    parse: Literal["json", "none"] = Field(
        default="none", description="json: the answer's fields (the response format's schema "
                                    "properties) become columns.")
    prefix: str = Field(default="", description="Put before the output's own column names.")


class ScheduleModel(dg.Model, dg.Resolvable):
    cron: str = Field(description="e.g. '0 2 * * *'; with daily partitions, the day just ended.")
    timezone: str = "UTC"
    default_status: Literal["running", "stopped"] = "running"


Partitions = Annotated[PerFilePartitions | DailyPartitions | StaticPartitions,
                       Field(discriminator="type")]


class ComponentScaffolder(dg.Scaffolder):
    """``dg scaffold defs batch_workflows.dagster.BatchInferenceComponent NAME``: a defs.yaml
    that loads as written (point `source.uri` at your files and `model` at your provider's)."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        name = request.target_path.name.replace("-", "_")
        dg.scaffold_component(request, {
            "name": name,
            "endpoint": CHAT,
            "model": "gpt-4o-mini",
            "source": {"uri": f"data/{name}/", "format": "jsonl", "id_field": "id"},
            "partitions": {"type": "per_file"},
            "request": {
                "messages": [{"role": "system", "content": "Classify the text."},
                             {"role": "user", "content": "{text}"}],
                "body": {"temperature": 0, "max_tokens": 32},
                "response_format": {"type": "json_schema", "json_schema": {
                    "name": "label", "strict": True, "schema": {
                        "type": "object", "properties": {"label": {"type": "string"}},
                        "required": ["label"], "additionalProperties": False}}},
            },
            "output": {"type": "table", "parse": "json"},
            "batch_resource_key": "batch",
            "artifacts_resource_key": "artifacts",
        })


# `model` (the YAML's name for the model to ask) shadows `Resolvable.model`, a classmethod: a
# field without a default leaves the class attribute alone, so only pydantic's warning is moot.
warnings.filterwarnings("ignore", message='Field name "model" in "BatchInferenceComponent"',
                        category=UserWarning)


@dg.scaffold_with(ComponentScaffolder)
class BatchInferenceComponent(dg.Component, dg.Resolvable, dg.Model):
    """A batch inference flow: source rows → requests → batches → an output table."""

    name: str = Field(description="The flow's name: its assets' key and its artifact folder.")
    model: str
    endpoint: Literal["/v1/chat/completions", "/v1/embeddings"] = CHAT
    source: SourceModel
    partitions: Partitions | None = Field(default=None, description="Omitted: unpartitioned.")
    request: RequestModel
    output: OutputModel = Field(default_factory=OutputModel)
    key_prefix: list[str] = Field(default_factory=list)
    group_name: str | None = None
    description: str | None = None
    owners: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    op_tags: dict[str, Any] = Field(default_factory=dict)
    batch_resource_key: str = "batch"
    artifacts_resource_key: str = "artifacts"
    schedule: ScheduleModel | None = None
    max_error_rate: float = Field(default=0.05, description="The error_rate check's bound.")
    min_parse_rate: float = Field(default=0.95, description="The answers_parse check's bound.")
    sensor_interval_seconds: int = 15
    inbox_interval_seconds: int = 30

    # -- hooks for subclasses ---------------------------------------------------------------------
    def template(self) -> RequestTemplate:
        r = self.request
        return RequestTemplate(
            endpoint=self.endpoint, model=self.model,
            messages=[{"role": m.role, "content": m.content} for m in r.messages],
            input=r.input, body=r.body, response_format=r.response_format)

    @cached_property
    def compiled_template(self) -> RequestTemplate:
        """`template()`, made and checked once (`request_body` runs for every row)."""
        return self.template()

    def request_body(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The request body of one row (`values`: the row's columns)."""
        return self.compiled_template.render(values)

    def output_spec(self) -> OutputSpec:
        schema = self.template().answer_schema() if self.output.parse == "json" else None
        return OutputSpec(embeddings=self.endpoint == EMBEDDINGS, parse=self.output.parse,
                          fields=dict((schema or {}).get("properties", {})),
                          prefix=self.output.prefix)

    # -- definitions ----------------------------------------------------------------------------
    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return FlowBuilder(self).definitions()

    def source_def(self) -> Source:
        return Source(self.source.uri, self.source.format, self.source.id_field)

    def partitions_def(self) -> dg.PartitionsDefinition | None:
        p = self.partitions
        if isinstance(p, PerFilePartitions):
            return dg.DynamicPartitionsDefinition(
                name="__".join([*self.key_prefix, self.name, "files"]))
        if isinstance(p, DailyPartitions):
            return dg.DailyPartitionsDefinition(start_date=p.start_date, timezone=p.timezone,
                                                fmt="%Y-%m-%d", end_offset=p.end_offset)
        if isinstance(p, StaticPartitions):
            return dg.StaticPartitionsDefinition(p.keys)
        return None

    def dynamic_partitions(self) -> dict[str, list[str]]:
        """per_file: one dynamic partition per source file (``assets.register_partitions``)."""
        if not isinstance(self.partitions, PerFilePartitions):
            return {}
        source = self.source_def()
        files = source.files(s3_client_for(source.uri))
        return {self.partitions_def().name: [f.name for f in files]}

    def files_of(self, partition_key: str | None, s3_client: Any) -> list[SourceFile]:
        """The source files of a partition."""
        source = self.source_def()
        p = self.partitions
        if p is None:
            files = source.files(s3_client)
            if not files:
                raise ConfigurationError(f"source.uri {source.uri}: no "
                                         f"{'/'.join(FORMATS[source.format])} file there")
            return files
        if partition_key is None:
            raise ConfigurationError("a partitioned flow needs a partition key")
        name = (partition_key if isinstance(p, PerFilePartitions)
                else p.file.replace("{partition_key}", partition_key))
        return [SourceFile(name, source.file_uri(name), 0, "")]


class FlowBuilder:
    """The definitions of one component: the lifecycle, the output table, sensors, schedule."""

    def __init__(self, component: BatchInferenceComponent):
        self.c = component
        self.template = component.template()  # a bad template fails when the YAML loads
        self.spec = component.output_spec()
        self.partitions_def = component.partitions_def()
        prefix = [*component.key_prefix, component.name]
        self.table_key = dg.AssetKey([*prefix, "table"])
        if component.schedule is not None and not isinstance(
                component.partitions, DailyPartitions | None):
            raise ConfigurationError("schedule: needs daily partitions or none (per_file and "
                                     "static partitions run from their sensor or by hand)")
        self.lifecycle: BatchLifecycle = batch_lifecycle(
            component.name, self.partitions_def, component.endpoint, self.build_requests,
            key_prefix=component.key_prefix, params={"output": self.spec.parse},
            batch_resource_key=component.batch_resource_key,
            artifacts_resource_key=component.artifacts_resource_key,
            group_name=component.group_name, group_description=component.description,
            owners=component.owners, tags=component.tags, op_tags=component.op_tags,
            kinds=["batch-inference"], max_error_rate=component.max_error_rate,
            sensor_interval_seconds=component.sensor_interval_seconds,
            collect_with=[self.table_key])

    @property
    def name(self) -> str:
        return self.lifecycle.spec.name

    def build_requests(self, context: AssetExecutionContext) -> Iterator[dict[str, Any]]:
        """The partition's requests; stores the row table and its columns once all are built."""
        pkey = self.lifecycle.spec.partition(context)
        store = getattr(context.resources, self.c.artifacts_resource_key)
        source = self.c.source_def()
        s3 = s3_client_for(source.uri)
        files = self.c.files_of(pkey, s3)
        layout = PartitionLayout(self.name, pkey)
        with tempfile.TemporaryDirectory(prefix="bw-rows-") as tmp:
            table = RowTable(Path(tmp) / ROWS_FILE)
            try:
                yield from build_requests(source, files, self.template, table, s3,
                                          render=self.c.request_body)
            finally:
                table.close()
            columns = table.columns()
            self.spec.check_columns(columns)  # before anything is uploaded
            store.put_file(table.path, layout.file(ROWS_FILE))
            store.write_bytes(layout.file(COLUMNS_FILE), orjson.dumps(columns))
            context.log.info(f"{pkey or self.name}: {table.rows:,} rows from {len(files)} "
                             f"file(s) → {table.rows:,} requests to {self.c.model}")

    def table_asset(self) -> dg.AssetsDefinition:
        checks = [dg.AssetCheckSpec(CHECK_ROWS, asset=self.table_key,
                                    description="One output row per source row; the statuses "
                                                "add up; no result for an id never submitted."),
                  dg.AssetCheckSpec(CHECK_ERRORS, asset=self.table_key,
                                    description="Share of rows not succeeded ≤ "
                                                f"{self.c.max_error_rate:.2%}.")]
        if self.spec.parse == "json":
            checks.append(dg.AssetCheckSpec(
                CHECK_PARSE, asset=self.table_key,
                description=f"Share of answers that parse ≥ {self.c.min_parse_rate:.2%}."))
        lifecycle, c = self.lifecycle, self.c

        @dg.asset(key=self.table_key, deps=[lifecycle.results], partitions_def=self.partitions_def,
                  required_resource_keys={c.artifacts_resource_key}, check_specs=checks,
                  group_name=lifecycle.requests.group_names_by_key[lifecycle.requests.key],
                  owners=c.owners, tags=c.tags, op_tags=c.op_tags,
                  kinds={"parquet", "batch-inference"},
                  description=f"{c.name}: one row per source row with the answer, status and "
                              "reason (Parquet in the artifact store).")
        def table(context):  # an AssetExecutionContext
            report, uri = self.write_output(context)
            yield dg.MaterializeResult(metadata=_table_metadata(report, uri))
            yield from _check_results(report, c, self.spec.parse == "json")

        return table

    def write_output(self, context: AssetExecutionContext) -> tuple[TableReport, str]:
        pkey = self.lifecycle.spec.partition(context)
        store = getattr(context.resources, self.c.artifacts_resource_key)
        layout = PartitionLayout(self.name, pkey)
        columns = orjson.loads(store.read_bytes(layout.file(COLUMNS_FILE)))
        with tempfile.TemporaryDirectory(prefix="bw-table-") as tmp:
            rows = store.get_file(layout.file(ROWS_FILE), Path(tmp) / ROWS_FILE)
            results = fetch_results(store, self.name, pkey, Path(tmp) / "results.parquet")
            out = Path(tmp) / TABLE_FILE
            report = write_table(rows, results, out, columns, self.spec, work_dir=tmp)
            uri = store.put_file(out, layout.file(TABLE_FILE))
        return report, uri

    def sensors(self, table: dg.AssetsDefinition) -> list[dg.SensorDefinition]:
        sensors = list(self.lifecycle.sensors)
        if isinstance(self.c.partitions, PerFilePartitions):
            source = self.c.source_def()
            sensors.append(inbox_sensor(
                f"{self.lifecycle.spec.definition_name}_inbox_sensor", self.partitions_def,
                lambda: source.files(s3_client_for(source.uri)),
                [*self.lifecycle.assets, table],
                minimum_interval_seconds=self.c.inbox_interval_seconds,
                description=f"Adds a partition and runs {self.c.name} for each new or changed "
                            f"file under {source.uri}."))
        return sensors

    def schedules(self, table: dg.AssetsDefinition) -> list[dg.ScheduleDefinition]:
        s = self.c.schedule
        if s is None:
            return []
        job = dg.define_asset_job(f"{self.lifecycle.spec.definition_name}_job",
                                  selection=[*(a.key for a in self.lifecycle.assets), table.key],
                                  partitions_def=self.partitions_def, tags=self.c.tags)
        status = (dg.DefaultScheduleStatus.RUNNING if s.default_status == "running"
                  else dg.DefaultScheduleStatus.STOPPED)
        name = f"{self.lifecycle.spec.definition_name}_schedule"
        partitions_def = self.partitions_def
        # Not build_schedule_from_partitioned_job: it takes no cron for daily partitions.

        @dg.schedule(name=name, job=job, cron_schedule=s.cron, execution_timezone=s.timezone,
                     default_status=status,
                     description=f"Runs {self.c.name} on {s.cron!r} ({s.timezone}): with daily "
                                 "partitions, the latest complete day.")
        def tick(context: dg.ScheduleEvaluationContext):
            if partitions_def is None:
                return dg.RunRequest()
            keys = partitions_def.get_partition_keys(
                current_time=context.scheduled_execution_time)
            if not keys:
                return dg.SkipReason("no complete day yet")
            return dg.RunRequest(partition_key=keys[-1], run_key=keys[-1])

        return [tick]

    def definitions(self) -> dg.Definitions:
        table = self.table_asset()
        return dg.Definitions(assets=[*self.lifecycle.assets, table],
                              asset_checks=self.lifecycle.checks, sensors=self.sensors(table),
                              schedules=self.schedules(table))


def _table_metadata(report: TableReport, uri: str) -> dict[str, Any]:
    figures = report.to_dict()
    meta: dict[str, Any] = {"rows": report.rows, **figures["statuses"],
                            "error_rate": figures["error_rate"],
                            "orphan_results": report.orphan_results,
                            "table": dg.MetadataValue.path(uri),
                            "reasons": dg.MetadataValue.json(figures["reasons"]),
                            "samples": dg.MetadataValue.json(figures["samples"])}
    if report.parse_rate is not None:
        meta["parse_rate"] = figures["parse_rate"]
    return meta


def _check_results(report: TableReport, c: BatchInferenceComponent,
                   parse: bool) -> Iterator[dg.AssetCheckResult]:
    yield dg.AssetCheckResult(check_name=CHECK_ROWS, passed=report.accounted, metadata={
        "rows": report.rows, "statuses": sum(report.statuses.values()),
        "orphan_results": report.orphan_results})
    yield dg.AssetCheckResult(check_name=CHECK_ERRORS, passed=report.error_rate <= c.max_error_rate,
                              metadata={"error_rate": round(report.error_rate, 4),
                                        "max_error_rate": c.max_error_rate})
    if parse:
        rate = report.parse_rate if report.parse_rate is not None else 1.0
        yield dg.AssetCheckResult(check_name=CHECK_PARSE, passed=rate >= c.min_parse_rate,
                                  metadata={"parse_rate": round(rate, 4),
                                            "min_parse_rate": c.min_parse_rate})
