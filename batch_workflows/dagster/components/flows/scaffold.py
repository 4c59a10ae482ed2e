"""``dg scaffold defs batch_workflows.dagster.<Flow>Component NAME``: a defs.yaml that loads as
written, with the component's `example_attributes(name)` (each names its inbox under data/)."""

from __future__ import annotations

import importlib

import dagster as dg


class FlowScaffolder(dg.Scaffolder):
    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        module, _, cls_name = request.type_name.rpartition(".")
        component = getattr(importlib.import_module(module), cls_name)
        name = request.target_path.name.replace("-", "_")
        dg.scaffold_component(request, {"name": name, **component.example_attributes(name)})
