"""The docs stay true to the code: the README shows each flow's defs.yaml as it is, and
docs/integration.md names every attribute of every component and every field of every resource
the integration ships."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import batch_workflows.dagster as integration
from assets.flows import DEFS, FLOWS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
INTEGRATION = (ROOT / "docs" / "integration.md").read_text(encoding="utf-8")
COMPONENTS = [name for name in integration.__all__ if name.endswith("Component")]
RESOURCES = ["BatchResource", "ArtifactStore", "QdrantResource"]


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end >= 0 else len(text)]


@pytest.mark.parametrize("flow", FLOWS)
def test_each_flows_readme_section_shows_its_defs_yaml(flow):
    yaml = (DEFS / flow / "defs.yaml").read_text(encoding="utf-8")
    section = _section(README, f"## The {flow} flow")
    assert f"```yaml\n{yaml}```" in section, f"README's {flow} section lacks its defs.yaml"


def test_the_flows_are_the_three_shipped_ones():
    assert sorted(FLOWS) == ["distillation", "embeddings", "moderation"]


@pytest.mark.parametrize("name", COMPONENTS + RESOURCES)
def test_integration_md_lists_every_attribute_of_every_component(name):
    component = getattr(integration, name)
    assert f"`{name}`" in INTEGRATION
    # A table row or a line naming the attribute in backticks (nested ones as `field.sub`).
    named = set(re.findall(r"`([a-z_0-9]+)(?:\.[a-z_0-9]+)?`", INTEGRATION))
    missing = sorted(set(component.model_fields) - named)
    assert missing == [], f"{name}: not in docs/integration.md: {missing}"
