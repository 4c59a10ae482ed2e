"""``EmbeddingsComponent``: documents → chunks → /v1/embeddings batches → a Qdrant collection::

    type: batch_workflows.dagster.EmbeddingsComponent
    attributes:
      name: catalog
      key_prefix: [search]
      watch_uri: s3://shop-lake/catalog/     # a folder or an s3:// prefix; one partition per file
      pydoc_shards: 0                        # 0: without the shipped Python reference corpus
      embedding_model: text-embedding-3-small
      id_field: sku
      text_field: description
      qdrant: {url: "https://qdrant.internal:6333", api_key_env_var: QDRANT_API_KEY,
               collection: catalog}

Attributes are `EmbeddingsSettings`' (each one's environment variable in this repository is
``EMBEDDINGS_<NAME>``, the model's ``EMBEDDING_MODEL``), with the same defaults. Without
`qdrant`, the flow uses the ``QdrantResource`` bound under `qdrant_resource_key`; with it, the
component binds its own there. Subclass and override `EmbeddingsFlow` hooks (via `build_flow`)
for a custom request builder or sink.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import dagster as dg
from pydantic import Field

from batch_workflows.dagster.components.flows.base import FlowComponent
from batch_workflows.dagster.components.flows.scaffold import FlowScaffolder
from batch_workflows.flows.embeddings.settings import EmbeddingsSettings

_D = EmbeddingsSettings()


class QdrantModel(dg.Model, dg.Resolvable):
    """A Qdrant collection: a local folder (`path`) or a server (`url`); the key by variable."""

    collection: str = "documents"
    path: str | None = Field(default=None, description="Qdrant's local mode: a folder.")
    url: str | None = Field(default=None, description="A server or cluster URL.")
    api_key_env_var: str | None = Field(
        default=None, description="The environment variable holding the key (read at run time).")


class EmbeddingsComponent(FlowComponent):
    """The embeddings flow as a component (see the module doc)."""

    name: str = "embeddings"
    embedding_model: str = Field(default=_D.model, description="The /v1/embeddings model.")
    watch_uri: str = Field(default=_D.watch_uri, description="Folder or s3:// prefix; each "
                                                             "document file is a partition.")
    pydoc_shards: int = Field(default=_D.pydoc_shards,
                              description="Shards of the shipped pydoc corpus (0: none).")
    chunk_tokens: int = Field(default=_D.chunk_tokens)
    chunk_overlap: int = Field(default=_D.chunk_overlap)
    inputs_per_request: int = Field(default=_D.inputs_per_request)
    tokens_per_request: int = Field(default=_D.tokens_per_request)
    tokenizer: str | None = Field(default=_D.tokenizer, description="A model folder, 'regex', "
                                  "or None: the shipped model's.")
    id_field: str = _D.id_field
    text_field: str = _D.text_field
    # Checked when the YAML loads: the reader refuses anything else, but only once a run reads.
    text_unit: Literal["file", "line"] = Field(
        default=_D.text_unit, description=".txt/.md files: the whole file is one document "
                                          "(file) or each non-blank line is (line).")
    check_sample: int = Field(default=_D.check_sample,
                              description="Chunks the chunks_retrieve_themselves check queries.")
    MINIMUMS = {**FlowComponent.MINIMUMS, "pydoc_shards": 0, "chunk_tokens": 1,
                "chunk_overlap": 0, "inputs_per_request": 1, "tokens_per_request": 1,
                "check_sample": 1}
    qdrant_resource_key: str = "qdrant"
    qdrant: QdrantModel | None = Field(default=None, description="None: the QdrantResource "
                                       "bound under qdrant_resource_key.")
    group_description: str = (
        "Semantic search index: documents (the shipped Python reference or inbox files) cut into "
        "token-measured chunks, embedded through /v1/embeddings batches and upserted into "
        "Qdrant; one partition per source shard or file.")

    @classmethod
    def example_attributes(cls, name: str) -> dict:
        return {"key_prefix": [], "watch_uri": f"data/{name}/", "pydoc_shards": 0,
                "embedding_model": _D.model, "id_field": "id", "text_field": "text",
                "text_unit": "file", "qdrant_resource_key": "qdrant"}

    def settings(self) -> EmbeddingsSettings:
        return self.settings_of(EmbeddingsSettings, model=self.embedding_model)

    def build_flow(self):
        from batch_workflows.dagster.components.flows.embeddings.flow import EmbeddingsFlow

        return EmbeddingsFlow(self)

    def dynamic_partitions(self) -> Mapping[str, Sequence[str]]:
        flow = self.flow()
        return {flow.partitions_def.name: flow.partition_keys()}

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        defs = self.flow().definitions()
        if self.qdrant is None:
            return defs
        from batch_workflows.dagster.resources import QdrantResource

        q = self.qdrant
        resource = QdrantResource(collection=q.collection, path=q.path, url=q.url,
                                  api_key=dg.EnvVar(q.api_key_env_var) if q.api_key_env_var
                                  else None)
        return dg.Definitions.merge(defs, dg.Definitions(
            resources={self.qdrant_resource_key: resource}))


dg.scaffold_with(FlowScaffolder)(EmbeddingsComponent)
