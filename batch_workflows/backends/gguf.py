"""Load a GGUF chat model with transformers, converted once into a local cache folder.

transformers reads GGUF by dequantizing every tensor and rebuilding the tokenizer from the file's
vocabulary: 20-60 s on a small CPU, and a transient peak of memory. The result is an ordinary
float model, so it is saved once (safetensors + tokenizer files, in a folder named after the
file's name, size and mtime) and later loads read that folder in a second or two. The cache is
an optimisation only: when it cannot be written, the model is loaded from the GGUF file as is.

Cache folder: $BATCH_WORKFLOWS_CACHE, else $XDG_CACHE_HOME/batch-workflows, else
~/.cache/batch-workflows; each model under gguf/.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

COMPLETE = "conversion-complete"  # written last: a folder without it is ignored


def cache_root() -> Path:
    explicit = os.environ.get("BATCH_WORKFLOWS_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "batch-workflows"


def converted_folder(gguf_path: Path, dtype: Any) -> Path:
    """Where the converted copy of this exact file lives (name, size, mtime and dtype)."""
    st = gguf_path.stat()
    kind = str(dtype).rsplit(".", 1)[-1]
    return cache_root() / "gguf" / f"{gguf_path.stem}-{st.st_size}-{st.st_mtime_ns}-{kind}"


def load_gguf(gguf_path: Path, dtype: Any) -> tuple[Any, Any]:
    """(model, tokenizer) of a GGUF file in `dtype` (a torch dtype), from its converted copy
    when there is one (stored in that dtype: loading it converts nothing)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = converted_folder(gguf_path, dtype)
    if (folder / COMPLETE).exists():
        return (AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype),
                AutoTokenizer.from_pretrained(str(folder)))
    where = {"pretrained_model_name_or_path": str(gguf_path.parent), "gguf_file": gguf_path.name}
    tokenizer = AutoTokenizer.from_pretrained(**where)
    model = AutoModelForCausalLM.from_pretrained(**where).to(dtype)
    _save(model, tokenizer, folder)
    return model, tokenizer


def _save(model: Any, tokenizer: Any, folder: Path) -> None:
    """Write the converted copy atomically (a temporary folder renamed into place)."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    except OSError as exc:  # a read-only or full disk: run from the GGUF file every time
        log.warning("cannot cache the converted model in %s: %s", folder.parent, exc)
        return
    try:
        # The weights are plain floats now: what marks them GGUF-quantized only stops saving.
        model.hf_quantizer = None
        model.config.__dict__.pop("quantization_config", None)
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / COMPLETE).write_text("")
        tmp.rename(folder)
        log.info("converted %s once into %s", folder.name, folder)
    except OSError as exc:  # incl. another process renaming its copy into place first
        log.warning("cannot cache the converted model in %s: %s", folder, exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
