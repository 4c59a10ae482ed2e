"""The three flows as components: keys, YAML templates, scaffolding, two moderation strategies
side by side, partitions listed for registration."""

from __future__ import annotations

import pytest
import yaml
from dagster import AssetKey, DagsterInstance
from dagster.components.testing import create_defs_folder_sandbox

from batch_workflows.dagster import (
    DistillationComponent,
    EmbeddingsComponent,
    ModerationComponent,
)
from batch_workflows.dagster.components.flows.base import register_dynamic_partitions
from batch_workflows.errors import ConfigurationError
from batch_workflows.profiles import CHAT, EMBEDDINGS

FLOWS = [(EmbeddingsComponent, "index"), (ModerationComponent, "verdicts"),
         (DistillationComponent, "dataset")]


def _keys(defs) -> set[AssetKey]:
    return {key for assets_def in defs.assets for key in assets_def.keys}


@pytest.mark.parametrize(("cls", "output"), FLOWS)
def test_flat_keys_by_default_and_prefixed_keys_with_a_prefix(cls, output):
    name = cls.model_fields["name"].default
    flat = cls().build_defs(None)
    assert _keys(flat) == {AssetKey(f"{name}_{step}")
                           for step in ("requests", "batch", "results", output)}
    prefixed = cls(name="mine", key_prefix=["team"]).build_defs(None)
    assert _keys(prefixed) == {AssetKey(["team", "mine", step])
                               for step in ("requests", "batch", "results", output)}
    assert {s.name for s in prefixed.sensors} == {"team__mine_batch_sensor",
                                                  "team__mine_inbox_sensor"}


def test_attributes_are_the_flow_settings_with_the_same_defaults():
    from batch_workflows.flows.distillation.settings import DistillationSettings
    from batch_workflows.flows.embeddings.settings import EmbeddingsSettings
    from batch_workflows.flows.moderation.settings import ModerationSettings

    assert EmbeddingsComponent().settings() == EmbeddingsSettings()
    assert ModerationComponent().settings() == ModerationSettings()
    assert DistillationComponent().settings() == DistillationSettings()
    assert DistillationComponent(seed="none").settings().seed is None
    assert DistillationComponent(system_prompt="").settings().system_prompt == ""


def test_two_moderation_strategies_live_side_by_side(tmp_path):
    text = f"""
type: batch_workflows.dagster.ModerationComponent
attributes: {{name: moderation_embedding, key_prefix: [], strategy: embedding,
             watch_uri: "{tmp_path}"}}
---
type: batch_workflows.dagster.ModerationComponent
attributes: {{name: moderation_llm, key_prefix: [], strategy: llm, watch_uri: "{tmp_path}",
             schedule: null}}
"""
    with create_defs_folder_sandbox() as sandbox:
        (sandbox.defs_folder_path / "moderation").mkdir()
        (sandbox.defs_folder_path / "moderation" / "defs.yaml").write_text(text)
        with sandbox.load_component_and_build_defs(defs_path="moderation") as (_, defs):
            keys = _keys(defs)
            assert {AssetKey(["moderation_embedding", "verdicts"]),
                    AssetKey(["moderation_llm", "verdicts"])} <= keys
            assert [s.name for s in defs.schedules] == ["moderation_embedding_daily_schedule"]
    embedding = ModerationComponent(name="a", key_prefix=[], strategy="embedding").flow()
    llm = ModerationComponent(name="b", key_prefix=[], strategy="llm").flow()
    assert (embedding.lifecycle.spec.endpoint, llm.lifecycle.spec.endpoint) == (EMBEDDINGS, CHAT)


def test_environment_templates_win_and_unset_ones_keep_the_default(monkeypatch):
    attributes = {"chunk_tokens": "{{ env.BW_TEST_CHUNKS }}", "tokenizer": "{{ env.BW_UNSET }}"}
    monkeypatch.delenv("BW_UNSET", raising=False)
    monkeypatch.setenv("BW_TEST_CHUNKS", "120")
    component = EmbeddingsComponent.resolve_from_dict(attributes)
    assert component.chunk_tokens == 120 and component.tokenizer is None
    monkeypatch.setenv("BW_TEST_CHUNKS", "0")
    # The error names the attribute, the variable it came from, and the bound.
    with pytest.raises(ConfigurationError, match=r"chunk_tokens \(the YAML says "
                       r"'\{\{ env.BW_TEST_CHUNKS \}\}'\): chunk_tokens: 0 is below its minimum 1"):
        EmbeddingsComponent.resolve_from_dict(attributes)
    monkeypatch.setenv("BW_TEST_CHUNKS", "many")
    with pytest.raises(ConfigurationError, match=r"chunk_tokens = 'many' \(the YAML says "
                       r"'\{\{ env.BW_TEST_CHUNKS \}\}'\): Input should be a valid integer"):
        EmbeddingsComponent.resolve_from_dict(attributes)


@pytest.mark.parametrize(("cls", "output"), FLOWS)
def test_scaffolding_writes_a_defs_yaml_that_loads(cls, output):
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(component_cls=cls, defs_path="my_flow")
        written = yaml.safe_load((path / "defs.yaml").read_text())
        assert written["attributes"]["name"] == "my_flow"
        with sandbox.build_all_defs() as defs:
            assert AssetKey(["my_flow", output]) in _keys(defs)


def test_dynamic_partitions_are_listed_and_registered(tmp_path):
    (tmp_path / "a.md").write_text("# A note")
    component = EmbeddingsComponent(name="notes", key_prefix=["kb"], watch_uri=str(tmp_path),
                                    pydoc_shards=1)
    assert component.dynamic_partitions() == {"kb__notes_sources": ["pydoc-1-of-1", "a.md"]}
    with DagsterInstance.ephemeral() as instance:
        assert register_dynamic_partitions(instance, component.dynamic_partitions()) == [
            "pydoc-1-of-1", "a.md"]
        assert register_dynamic_partitions(instance, component.dynamic_partitions()) == []
    assert ModerationComponent().dynamic_partitions() == {}  # daily: nothing to register


def test_a_flows_namespace_replaces_the_resources_in_its_batches_identity(tmp_path):
    """The attribute reaches the lifecycle: its submissions and its sensor's scan use it in place
    of the batch resource's (the behaviour itself: tests/assets/test_lifecycle_namespaces.py)."""
    from dagster import build_asset_context

    from batch_workflows.dagster import ArtifactStore, BatchResource
    from batch_workflows.dagster.lifecycle import steps

    flow = ModerationComponent(name="m", key_prefix=[], strategy="embedding",
                               namespace="staging").flow()
    assert flow.lifecycle.spec.namespace == "staging"
    store = ArtifactStore(base_uri=str(tmp_path))
    batch = BatchResource(provider="openai")
    context = build_asset_context()
    assert steps.policy_for(flow.lifecycle.spec, context, batch, store).namespace == "staging"
    plain = ModerationComponent(name="p", key_prefix=[], strategy="embedding").flow()
    assert steps.policy_for(plain.lifecycle.spec, context, batch, store).namespace == (
        batch.namespace_for(store))
