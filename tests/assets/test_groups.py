"""The code location's asset groups: one per flow in FLOWS (a folder of assets/defs/), each with
a description, and every asset with a description, kinds and owners in a form Dagster accepts
(an email address or ``team:<name>``)."""

from __future__ import annotations

import re

import pytest

from assets.definitions import FLOWS, defs
from batch_workflows.dagster import DEFAULT_OWNERS, GROUP_DESCRIPTION_KEY

OWNER = re.compile(r"^(team:\S+|[^@\s]+@[^@\s]+\.[^@\s]+)$")

GRAPH = defs.get_repository_def().asset_graph
NODES = {key.to_user_string(): GRAPH.get(key) for key in GRAPH.get_all_asset_keys()}
GROUPS = list(FLOWS)


def test_one_group_per_flow():
    assert sorted({node.group_name for node in NODES.values()}) == sorted(GROUPS)


@pytest.mark.parametrize("name", sorted(NODES))
def test_every_asset_has_a_description_kinds_and_owners(name):
    node = NODES[name]
    assert node.description and node.description.strip()
    assert node.kinds
    assert node.owners, f"{name} has no owners"
    assert all(OWNER.match(owner) for owner in node.owners), node.owners


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_has_one_description(group):
    described = {str(getattr(node.metadata[GROUP_DESCRIPTION_KEY], "value",
                             node.metadata[GROUP_DESCRIPTION_KEY]))
                 for node in NODES.values()
                 if node.group_name == group and GROUP_DESCRIPTION_KEY in node.metadata}
    assert len(described) == 1, f"{group}: {described or 'no description'}"
    assert len(described.pop()) > 20


def test_the_factorys_default_owner_is_one_dagster_accepts():
    assert all(OWNER.match(owner) for owner in DEFAULT_OWNERS)
