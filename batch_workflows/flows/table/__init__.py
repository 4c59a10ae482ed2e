"""The table flow: rows of a file in, one request per row, one output row per source row.

What ``BatchInferenceComponent`` runs, and usable without Dagster:

* `template` — ``RequestTemplate``: the request body of a row, ``{column}`` placeholders;
* `rows` — ``Source`` (a folder, an ``s3://`` prefix or a file, JSONL/CSV/Parquet),
  ``build_requests`` and the row table (``RowTable``) kept beside the shards;
* `output` — ``write_table``: the row table joined with the results, one row per source row
  with the answer, its parsed fields (or the vector), status and reason; ``TableReport``.
"""

from batch_workflows.flows.table.output import OutputSpec, TableReport, write_table
from batch_workflows.flows.table.rows import FORMATS, RowTable, Source, build_requests
from batch_workflows.flows.table.template import RequestTemplate

__all__ = ["FORMATS", "OutputSpec", "RequestTemplate", "RowTable", "Source", "TableReport",
           "build_requests", "write_table"]
