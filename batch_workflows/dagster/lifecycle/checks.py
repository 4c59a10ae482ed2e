"""The lifecycle's asset checks on ``<name>_results``, read from the partition's summary."""

import warnings

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetsDefinition,
    PreviewWarning,
    asset_check,
)

from batch_workflows import lifecycle as lc
from batch_workflows.dagster.lifecycle.metadata import (
    accounted_metadata,
    combined_metadata,
    error_rate_metadata,
)
from batch_workflows.dagster.lifecycle.spec import LifecycleSpec

CHECK_ACCOUNTED = "all_requests_accounted"
CHECK_ERROR_RATE = "error_rate"


def check_accounted(spec: LifecycleSpec, context: AssetCheckExecutionContext) -> AssetCheckResult:
    summaries = _summaries(spec, context)
    return AssetCheckResult(passed=all(s.accounted for _, s in summaries),
                            metadata=combined_metadata([(k, accounted_metadata(s))
                                                        for k, s in summaries]))


def check_error_rate(spec: LifecycleSpec,
                     context: AssetCheckExecutionContext) -> AssetCheckResult:
    summaries = _summaries(spec, context)
    return AssetCheckResult(
        passed=all(s.error_rate <= spec.max_error_rate for _, s in summaries),
        severity=AssetCheckSeverity.ERROR,
        metadata=combined_metadata([(k, error_rate_metadata(s, spec.max_error_rate))
                                    for k, s in summaries]))


def _summaries(spec: LifecycleSpec, context: AssetCheckExecutionContext) -> list[tuple]:
    """(partition, summary) of each of the run's partitions (a range run has several)."""
    store = spec.store(context)
    return [(k, lc.read_summary(store, spec.name, k)) for k in spec.partition_keys(context)]


def lifecycle_checks(spec: LifecycleSpec,
                     results: AssetsDefinition) -> list[AssetChecksDefinition]:
    """``all_requests_accounted`` and ``error_rate`` on the results asset."""
    # Partitioned asset checks are a Dagster preview feature: accepted knowingly, not warned
    # about (set at each definition: test runners reset the warning filters between tests).
    warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*",
                            category=PreviewWarning)
    common = {"asset": results, "partitions_def": spec.partitions_def,
              "required_resource_keys": {spec.artifacts_resource_key}}

    @asset_check(name=CHECK_ACCOUNTED, **common,
                 description="Every submitted custom_id has exactly one row in the results, and no "
                             "result line came back for an id never submitted or twice for one id.")
    def accounted(context: AssetCheckExecutionContext) -> AssetCheckResult:
        return check_accounted(spec, context)

    @asset_check(name=CHECK_ERROR_RATE, **common,
                 description="Share of requests not succeeded after every attempt "
                             f"≤ {spec.max_error_rate:.2%}.")
    def error_rate(context: AssetCheckExecutionContext) -> AssetCheckResult:
        return check_error_rate(spec, context)

    return [accounted, error_rate]
