"""This repository's resources, bound from the environment (``build_resources``).

The integration (``batch_workflows.dagster``) reads no environment; this code location does, so
that the same code runs on the local engine, in CI and against a provider by configuration:

=========================  ==========================================================================
``batch``                  ``batch_resource_from_env()``: BATCH_PROVIDER, BATCH_BASE_URL, BATCH_API_KEY, …
``artifacts``              ``artifact_store_from_env()``: BATCH_ARTIFACTS_URI (``.data/artifacts``), S3's
``qdrant``                 ``qdrant_from_env()``: QDRANT_URL / QDRANT_API_KEY / QDRANT_PATH / QDRANT_COLLECTION
=========================  ==========================================================================
"""

from resources.environment import (
    artifact_store_from_env,
    batch_resource_from_env,
    build_resources,
    provider_from_env,
    qdrant_from_env,
)

__all__ = ["artifact_store_from_env", "batch_resource_from_env", "build_resources",
           "provider_from_env", "qdrant_from_env"]
