"""Server settings: one dataclass, filled from the command line (and env for secrets)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from batch_workflows.profiles import CHAT, EMBEDDINGS, GB


@dataclass
class ServerSettings:
    """Everything `batch-workflows serve` can be told. Secrets are never printed (see __repr__)."""

    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: Path = field(default_factory=lambda: Path(".data/server"))
    api_key: str | None = None
    embedding_model: str | None = None  # local path; None = the packaged all-MiniLM-L6-v2
    chat_model: str | None = None  # local path of a transformers chat model
    upstream_url: str | None = None
    upstream_api_key: str | None = None
    upstream_rpm: int | None = None
    upstream_tpm: int | None = None
    upstream_concurrency: int = 16
    upstream_endpoints: tuple[str, ...] = (CHAT, EMBEDDINGS)
    max_concurrent_batches: int = 4
    max_requests_per_file: int = 5_000_000
    max_bytes_per_file: int = 10 * GB
    max_upload_bytes: int = 10 * GB
    max_body_bytes: int = 32 * 1024 * 1024  # JSON request bodies
    completion_window_seconds: int = 24 * 3600
    workers: int = 2
    chunk_size: int | None = None  # requests per backend call; None = the backend's max_batch
    log_level: str = "info"
    # Provider behaviours emulated at validation (server/provider_rules.py); off by default.
    enqueued_token_limit: int | None = None  # input tokens enqueued per model
    organization: str = "org-local"  # named in the token_limit_exceeded message
    reject_unknown_models: bool = False  # fail the whole batch with model_not_found

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.__dict__.items() if k not in ("api_key", "upstream_api_key")}
        shown["api_key"] = "***" if self.api_key else None
        shown["upstream_api_key"] = "***" if self.upstream_api_key else None
        return f"ServerSettings({shown})"
