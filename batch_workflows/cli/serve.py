"""`batch-workflows serve`: the local OpenAI-compatible Files + Batches server."""

from __future__ import annotations

import argparse
import os
from typing import Any

DEFAULT_DATA_DIR = ".data/server"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the local OpenAI-compatible batch server",
        description="Serve the OpenAI Files and Batches APIs (plus real-time embeddings and "
        "chat) on top of local models or an upstream real-time endpoint.",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="state and file bodies")
    p.add_argument("--api-key", default=None,
                   help="require `Authorization: Bearer KEY` (default: env BATCH_SERVER_API_KEY)")
    p.add_argument("--embedding-model", default=None,
                   help="local sentence-transformers path (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--chat-model", default=None, help="local transformers chat model path")
    p.add_argument("--upstream-url", default=None,
                   help="forward requests to this real-time OpenAI-compatible base URL")
    p.add_argument("--upstream-api-key", default=None,
                   help="key for the upstream (default: env BATCH_UPSTREAM_API_KEY)")
    p.add_argument("--upstream-rpm", type=int, default=None, help="upstream requests per minute")
    p.add_argument("--upstream-tpm", type=int, default=None, help="upstream tokens per minute")
    p.add_argument("--upstream-concurrency", type=int, default=16)
    p.add_argument("--upstream-endpoints", default="/v1/chat/completions,/v1/embeddings",
                   help="comma-separated endpoints sent upstream when --upstream-url is set")
    p.add_argument("--max-concurrent-batches", type=int, default=4)
    p.add_argument("--max-requests-per-file", type=int, default=5_000_000)
    p.add_argument("--max-bytes-per-file", type=int, default=10_000_000_000)
    p.add_argument("--max-upload-bytes", type=int, default=10_000_000_000)
    p.add_argument("--max-body-bytes", type=int, default=32 * 1024 * 1024,
                   help="size limit of JSON request bodies")
    p.add_argument("--completion-window", default="24h",
                   help="longest completion window, e.g. 24h or 30s (expiry tests)")
    p.add_argument("--workers", type=int, default=2, help="batch worker threads")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="requests per backend call (default: the backend's preferred size)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> Any:
    from batch_workflows.server.settings import ServerSettings, parse_duration

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
    )


def run(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from batch_workflows.server.app import create_app

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
