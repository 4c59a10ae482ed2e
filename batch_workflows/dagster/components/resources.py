"""The resources as components, to bind them in YAML beside the flows (``defs.yaml``)::

    type: batch_workflows.dagster.BatchResourceComponent
    attributes:
      resource_key: batch
      provider: openai
      api_key_env_var: OPENAI_API_KEY      # read at run time (EnvVar): never shown or logged
      settings: {max_cost_usd: 50}

    type: batch_workflows.dagster.ArtifactStoreComponent
    attributes:
      resource_key: artifacts
      base_uri: s3://my-bucket/batch-workflows

A secret is named by its environment variable, never written in YAML: ``{{ env.X }}`` would put
its value in the resource's configuration, which the UI shows.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from batch_workflows.dagster.resources import ArtifactStore, BatchResource


def _env(name: str | None) -> dg.EnvVar | None:
    return dg.EnvVar(name) if name else None


class BatchResourceComponent(dg.Component, dg.Resolvable, dg.Model):
    """Binds a ``BatchResource`` (a Batch API and the lifecycle's policies) under a key."""

    resource_key: str = "batch"
    provider: str = Field(description="a provider profile: local | openai | azure | nebius | "
                                      "groq | deepinfra | anthropic | custom")
    base_url: str | None = Field(default=None, description="None: the provider profile's.")
    api_key_env_var: str | None = Field(
        default=None, description="The environment variable holding the API key.")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Any other BatchResource setting (max_cost_usd, "
                                          "max_attempts, blocking, ...).")

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        resource = BatchResource(provider=self.provider, base_url=self.base_url,
                                 api_key=_env(self.api_key_env_var), **self.settings)
        return dg.Definitions(resources={self.resource_key: resource})


class ArtifactStoreComponent(dg.Component, dg.Resolvable, dg.Model):
    """Binds an ``ArtifactStore`` (a folder, or ``s3://bucket/prefix``) under a key."""

    resource_key: str = "artifacts"
    base_uri: str = Field(description="A folder shared by every run, or s3://bucket/prefix.")
    s3_endpoint_url: str | None = None
    s3_region_name: str | None = None
    aws_access_key_id_env_var: str | None = Field(
        default=None, description="None: boto's default chain (roles, profiles, AWS_*).")
    aws_secret_access_key_env_var: str | None = None

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        store = ArtifactStore(base_uri=self.base_uri, s3_endpoint_url=self.s3_endpoint_url,
                              s3_region_name=self.s3_region_name,
                              aws_access_key_id=_env(self.aws_access_key_id_env_var),
                              aws_secret_access_key=_env(self.aws_secret_access_key_env_var))
        return dg.Definitions(resources={self.resource_key: store})
