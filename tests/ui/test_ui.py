"""The Dagster UI in Chromium, against `dagster dev -w workspace.yaml` after a CLI materialization
(fixtures in conftest.py): the asset groups of every flow in FLOWS, a partitioned asset's
materialized partition, and the checks, schedules and sensors pages without errors.

A page "loads with no error" when the texts it must show appear, no GraphQL response of the page
carries ``errors`` or a ``PythonError``, the page raised no uncaught exception, and none of the
UI's error texts is on screen. Each page leaves a screenshot (path printed by conftest).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.dagster_ui import MATERIALIZED, PARTITION, REPO_PATH

from assets.definitions import FLOWS, defs
from batch_workflows.dagster import CHECK_ACCOUNTED, CHECK_ERROR_RATE

# What the Dagster UI puts on screen when a page or a query fails.
ERROR_TEXTS = ("Unexpected GraphQL error", "PythonError", "Traceback (most recent call last)",
               "An unexpected error", "Something went wrong", "Error loading",
               "Could not load", "failed to load", "daemon is not running")
LOADING = re.compile(r"^Loading")  # the UI's placeholder while a query is in flight
WAIT_MS = 60_000  # a cold page on a busy 2-core machine: the first GraphQL queries load the graph


def flow_groups() -> list[str]:
    """The asset groups the code location must show: one per flow (assets/defs/<flow>)."""
    return list(FLOWS)


REPO = defs.get_repository_def()
SCHEDULES = sorted(s.name for s in REPO.schedule_defs)
SENSORS = sorted(s.name for s in REPO.sensor_defs)


@dataclass
class Visit:
    """One page: its text once the expected texts are on screen, and what went wrong on it."""

    text: str
    graphql_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def assert_no_error(self) -> None:
        assert not self.graphql_errors, self.graphql_errors[:5]
        assert not self.page_errors, self.page_errors[:5]
        shown = [t for t in ERROR_TEXTS if t.lower() in self.text.lower()]
        assert not shown, f"error text on the page: {shown}\n{self.text[:3000]}"


def _graphql_problems(body: object) -> list[str]:
    """`errors` of a GraphQL response, and every PythonError object anywhere in its data."""
    problems: list[str] = []
    if isinstance(body, dict):
        problems += [json.dumps(e)[:500] for e in body.get("errors") or []]
    stack = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("__typename") == "PythonError":
                problems.append(f"PythonError: {node.get('message', '')[:500]}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return problems


def visit(browser, ui, path: str, texts: list[str], shot: Path, click: str | None = None,
          then: tuple[str, ...] = ()) -> Visit:
    """Open `path`, wait until every text of `texts` is visible (then click the text `click`
    and wait for those of `then`) and nothing says it is loading, screenshot, collect errors."""
    from playwright.sync_api import expect  # here: a missing Playwright fails in conftest

    page = browser.new_page()
    responses = []
    page_errors: list[str] = []
    page.on("response", lambda r: responses.append(r) if "/graphql" in r.url else None)
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    try:
        page.goto(ui.url + path, wait_until="domcontentloaded")
        for text in texts:
            page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=WAIT_MS)
        if click:
            page.get_by_text(click, exact=True).first.click()
        for text in then:
            page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=WAIT_MS)
        expect(page.get_by_text(LOADING)).to_have_count(0, timeout=WAIT_MS)
        page.wait_for_timeout(500)  # let the queries still in flight for the page settle
        page.screenshot(path=str(shot), full_page=True)
        problems: list[str] = []
        for response in responses:
            if response.ok:
                problems += _graphql_problems(response.json())
            else:
                problems.append(f"HTTP {response.status} from {response.url}")
        return Visit(page.inner_text("body"), problems, page_errors)
    finally:
        page.close()


def test_asset_groups_page_shows_every_flows_group(browser, dagster_ui, screenshots_dir):
    groups = flow_groups()
    result = visit(browser, dagster_ui, f"/locations/{REPO_PATH}/assets", groups,
                   screenshots_dir / "asset-groups.png")
    result.assert_no_error()
    for group in groups:
        assert group in result.text
    # The global lineage draws every group as a box around its assets.
    lineage = visit(browser, dagster_ui, "/asset-groups", groups,
                    screenshots_dir / "asset-lineage.png")
    lineage.assert_no_error()
    # One group's own page: its assets' graph (the README's screenshot).
    group = visit(browser, dagster_ui, f"/locations/{REPO_PATH}/asset-groups/embeddings",
                  list(MATERIALIZED), screenshots_dir / "embeddings-group.png")
    group.assert_no_error()


def test_partitions_view_shows_the_materialized_partition(browser, dagster_ui, screenshots_dir):
    asset = MATERIALIZED[-1]
    # The status filter counts one materialized partition; selecting it shows its one event.
    result = visit(browser, dagster_ui, f"/assets/{asset}?view=partitions",
                   [PARTITION, "Materialized (1)"], screenshots_dir / "partitions.png",
                   click=PARTITION, then=("View all historical events (1)",))
    result.assert_no_error()


@pytest.mark.parametrize(("name", "path", "texts"), [
    ("checks", "/assets/embeddings_results?view=checks",
     [CHECK_ACCOUNTED, CHECK_ERROR_RATE, "Succeeded"]),
    ("schedules", f"/locations/{REPO_PATH}/schedules", ["Schedules", *SCHEDULES]),
    ("sensors", f"/locations/{REPO_PATH}/sensors", ["Sensors", *SENSORS]),
    ("sensor", f"/locations/{REPO_PATH}/sensors/embeddings_batch_sensor",
     ["embeddings_batch_sensor", "Running", "Latest tick"]),  # the daemon ticks it
])
def test_page_loads_without_error(browser, dagster_ui, screenshots_dir, name, path, texts):
    result = visit(browser, dagster_ui, path, texts, screenshots_dir / f"{name}.png")
    result.assert_no_error()
