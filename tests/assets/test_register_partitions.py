"""``python -m assets.register_partitions`` registers the dynamic partitions of every component
instance of the code location's defs folder, not a list of this repository's flows: a copy of
the code location with two more instances a user would add (an embeddings flow of their own
under a key prefix, and a ``BatchInferenceComponent`` over a folder of CSV files) gets all of
them, each under its own partitions definition, once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from dagster import DagsterInstance
from support.triage import TRIAGE

from batch_workflows.flows.corpus import pydoc_shard_keys

ROOT = Path(__file__).resolve().parents[2]

CATALOG = """
# A user's flow, in YAML only: their product notes into a collection of their own.
type: batch_workflows.dagster.EmbeddingsComponent
attributes:
  name: catalog
  key_prefix: [search]
  watch_uri: {inbox}
  pydoc_shards: 0
  id_field: sku
  text_field: description
"""


def _project(tmp_path: Path) -> Path:
    """This repository's code location (pyproject, assets/, resources/), copied, plus the two
    user instances: the command finds them by walking the defs folder, like dg does."""
    project = tmp_path / "project"
    skip = shutil.ignore_patterns("__pycache__", ".data")
    for folder in ("assets", "resources"):
        shutil.copytree(ROOT / folder, project / folder, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    catalog_inbox, tickets = tmp_path / "catalog", tmp_path / "tickets"
    catalog_inbox.mkdir()
    (catalog_inbox / "shoes.jsonl").write_text('{"sku": "s1", "description": "Red shoes"}\n')
    (catalog_inbox / "hats.jsonl").write_text('{"sku": "h1", "description": "A grey hat"}\n')
    tickets.mkdir()
    (tickets / "monday.csv").write_text("ticket_id,subject,body\n1,Refund,Charged twice\n")
    defs = project / "assets" / "defs"
    (defs / "catalog").mkdir()
    (defs / "catalog" / "defs.yaml").write_text(CATALOG.format(inbox=catalog_inbox))
    (defs / "triage").mkdir()
    (defs / "triage" / "defs.yaml").write_text(TRIAGE.format(model="gpt-4o-mini", uri=tickets))
    return project


def _register(project: Path, env: dict[str, str]) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "assets.register_partitions"], cwd=project,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.splitlines()


def test_every_instance_of_the_defs_folder_is_registered_a_users_included(tmp_path):
    project = _project(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    distill_inbox, embed_inbox = tmp_path / "distill", tmp_path / "embed"
    distill_inbox.mkdir()
    embed_inbox.mkdir()
    (embed_inbox / "notes.md").write_text("# Notes\n\nabout generators\n")
    env = {**os.environ, "DAGSTER_HOME": str(home),
           # The copy's `assets` first: the command must walk the copy's defs folder.
           "PYTHONPATH": os.pathsep.join([str(project), str(ROOT)]),
           "EMBEDDINGS_WATCH_URI": str(embed_inbox), "EMBEDDINGS_PYDOC_SHARDS": "3",
           "DISTILLATION_WATCH_URI": str(distill_inbox)}
    lines = _register(project, env)
    shards = pydoc_shard_keys(3)
    assert sorted(lines) == sorted([
        f"embeddings: added 4 partition(s) to embeddings_sources: {', '.join(shards)}, notes.md",
        "distillation: added 2 partition(s) to distillation_sources: sample-prompts, "
        "sample-pydoc",
        "search__catalog: added 2 partition(s) to search__catalog_sources: hats.jsonl, "
        "shoes.jsonl",
        "ticket_triage: added 1 partition(s) to support__ticket_triage__files: monday.csv",
    ]), lines
    with DagsterInstance.from_config(str(home)) as instance:
        assert sorted(instance.get_dynamic_partitions("embeddings_sources")) == sorted(
            [*shards, "notes.md"])
        assert sorted(instance.get_dynamic_partitions("search__catalog_sources")) == [
            "hats.jsonl", "shoes.jsonl"]
        assert instance.get_dynamic_partitions("support__ticket_triage__files") == ["monday.csv"]
    # Idempotent: a second run adds nothing, and says so for every instance.
    again = _register(project, env)
    assert sorted(again) == sorted(f"{name}: added 0 partition(s) to {partitions}" for name,
                                   partitions in [("embeddings", "embeddings_sources"),
                                                  ("distillation", "distillation_sources"),
                                                  ("search__catalog", "search__catalog_sources"),
                                                  ("ticket_triage",
                                                   "support__ticket_triage__files")])
