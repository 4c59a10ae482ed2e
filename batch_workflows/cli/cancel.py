"""`batch-workflows cancel --asset NAME --partition KEY`: cancel an asset partition's batches.

Finds the batches through the provider's list by the metadata the lifecycle writes on every
batch (asset, partition, namespace), so it works from any machine, without Dagster or local
state, and cancels those that are not terminal — only the deployment's own: `--namespace` (or
BATCH_NAMESPACE), else the namespace derived from `--artifacts-uri` (or BATCH_ARTIFACTS_URI)
as the batch resource derives it; with neither, only batches without a namespace (scripts',
and those made before namespaces). `--with-unnamespaced` adds those to a namespace's.
Settings as in the code location: `--base-url` or BATCH_BASE_URL, else the profile of
`--provider` / BATCH_PROVIDER; the key from BATCH_API_KEY. Anthropic batches carry no metadata:
with `--provider anthropic` the deployment's create intents say which are its, read from its
artifact store (`--artifacts-uri` / BATCH_ARTIFACTS_URI, a folder or s3://…, credentials from
the AWS_* environment) under the namespace, else from a local folder (BATCH_STATE_DIR) where a
script without an artifact store kept them.
Exit 0 (also when nothing was left to cancel); 1 when the provider refused.
"""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cancel",
        help="cancel the provider batches of an asset partition",
        description=__doc__.split("\n", 1)[0],
    )
    parser.add_argument("--asset", required=True, help="lifecycle name (the factory's `name`)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--partition", help="partition key")
    which.add_argument("--all-partitions", action="store_true",
                       help="every partition of the asset (and an unpartitioned asset)")
    parser.add_argument("--base-url", default=None,
                        help="API root incl. /v1 (default: BATCH_BASE_URL or the profile's)")
    parser.add_argument("--provider", default=None,
                        help="profile when no base URL is given (default: BATCH_PROVIDER or local)")
    parser.add_argument("--namespace", default=None,
                        help="the deployment's namespace (default: BATCH_NAMESPACE, else derived "
                        "from --artifacts-uri)")
    parser.add_argument("--artifacts-uri", default=None,
                        help="the deployment's artifact store: its default namespace, and "
                        "where provider anthropic keeps the create intents "
                        "(default: BATCH_ARTIFACTS_URI)")
    parser.add_argument("--with-unnamespaced", action="store_true",
                        help="also cancel batches without a namespace (made before namespaces)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be cancelled")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from batch_workflows import lifecycle as lc
    from batch_workflows.lifecycle.storage import open_storage
    from batch_workflows.profiles import get_profile, resolve_base_url
    from batch_workflows.provider_client import open_client
    from batch_workflows.wire import is_live

    base_url = resolve_base_url(args.provider, args.base_url)
    partition = None if args.all_partitions else args.partition
    namespace = _namespace(args)
    owner = lc.Owner(namespace)
    unscoped = lc.Owner(None)
    provider = args.provider or os.environ.get("BATCH_PROVIDER")
    uri = args.artifacts_uri or os.environ.get("BATCH_ARTIFACTS_URI")
    with open_client(provider, base_url, os.environ.get("BATCH_API_KEY"),
                     store=open_storage(uri) if uri else None, namespace=namespace,
                     state_dir=os.environ.get("BATCH_STATE_DIR")) as client:
        # a live batch is younger than the longest window the provider takes (and an hour)
        since = lc.live_since(get_profile(provider or "local").completion_windows[1])
        live = [b for b in lc.iter_lifecycle_batches(client, asset=args.asset, partition=partition,
                                                     created_after=since)
                if is_live(b) and (owner.owns(b) or (args.with_unnamespaced and unscoped.owns(b)))]
        where = "all partitions" if partition is None else f"partition {partition!r}"
        where += f", {owner.describe()}"
        if not live:
            print(f"no live batches for asset {args.asset!r}, {where}")
            return 0
        for batch in live:
            meta = batch.get("metadata") or {}
            label = (f"{batch['id']} (partition {meta.get(lc.META_PARTITION)!r}, attempt "
                     f"{meta.get(lc.META_ATTEMPT)}, shard {meta.get(lc.META_SHARD)}, "
                     f"{batch.get('status')})")
            if args.dry_run:
                print(f"would cancel {label}")
                continue
            after = client.cancel_batch(batch["id"])
            print(f"cancelled {label} -> {after.get('status')}")
    return 0


def _namespace(args: argparse.Namespace) -> str | None:
    """--namespace / BATCH_NAMESPACE, else the one the batch resource derives from the store."""
    from batch_workflows import lifecycle as lc

    explicit = args.namespace or os.environ.get("BATCH_NAMESPACE")
    if explicit:
        return lc.check_namespace(explicit.strip())
    uri = args.artifacts_uri or os.environ.get("BATCH_ARTIFACTS_URI")
    return lc.namespace_for(lc.base_uri(uri)) if uri else None
