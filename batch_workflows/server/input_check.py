"""Input-file validation for a batch: one small function over the core RequestValidator."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch_workflows.errors import Problem
from batch_workflows.profiles import get_profile
from batch_workflows.server.settings import ServerSettings

MAX_PROBLEMS = 100


@dataclass
class InputCheck:
    requests: int
    model: str | None
    errors: list[dict[str, Any]] = field(default_factory=list)


def problem_code(problem: Problem) -> str:
    """The machine-readable code the validator gave the problem (`invalid_request` if none)."""
    return problem.code or "invalid_request"


def check_input(
    path: Path, endpoint: str, filename: str, settings: ServerSettings, endpoints: frozenset[str]
) -> InputCheck:
    """Stream the input file through the core validator; problems become `errors.data`."""
    from batch_workflows.requests.validate import RequestValidator

    profile = get_profile("local").with_limits(
        endpoints=endpoints,
        max_requests_per_file=settings.max_requests_per_file,
        max_bytes_per_file=settings.max_bytes_per_file,
    )
    # `path` lets the validator confirm suspected duplicate ids by re-reading the file.
    validator = RequestValidator(
        profile, endpoint, source=filename, max_problems=MAX_PROBLEMS, path=path
    )
    with open(path, "rb") as handle:
        validator.check_stream(handle)
    report = validator.finish()
    errors = [
        {"code": problem_code(p), "message": str(p), "param": p.field, "line": p.line}
        for p in report.problems
    ]
    if report.truncated:
        errors.append(
            {"code": "too_many_errors", "message": f"stopped after {len(errors)} problems",
             "param": None, "line": None}
        )
    if report.requests == 0 and not errors:
        errors.append(
            {"code": "empty_file", "message": f"{filename}: the input file has no requests",
             "param": None, "line": None}
        )
    return InputCheck(report.requests, report.model, errors)
