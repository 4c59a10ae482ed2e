"""The Dagster UI in a real browser: one materialized partition, one `dagster dev`, one Chromium
per test session (tests/support/dagster_ui.py does the work).

Missing Chromium or Playwright fails the tests with how to install them, never a skip.
Screenshots go to ``.data/ui-screenshots/`` (or ``$UI_SCREENSHOTS``); the path is printed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.dagster_ui import (
    ROOT,
    MissingBrowser,
    UiServer,
    launch_chromium,
    prepare_instance,
    start_dagster_dev,
)
from support.server import start_server


@pytest.fixture(scope="session")
def screenshots_dir() -> Path:
    folder = Path(os.environ.get("UI_SCREENSHOTS") or ROOT / ".data" / "ui-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nUI screenshots: {folder}")
    return folder


@pytest.fixture(scope="session")
def dagster_ui(tmp_path_factory) -> Iterator[UiServer]:
    root = tmp_path_factory.mktemp("ui")
    # An engine of its own: the daemon's batch sensors list every batch on the engine, and
    # batches other tests leave on the shared one belong to partitions this instance lacks.
    with start_server(root / "engine-server") as engine:
        env = prepare_instance(root, engine.base_url)
        ui = start_dagster_dev(env, root / "dagster-dev.log")
        try:
            yield ui
        finally:
            ui.stop()
            print(f"\ndagster dev log: {ui.log_path}")


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: pip install -e '.[dev]' "
                    "(never 'playwright install': Chromium comes from Debian)", pytrace=False)
    with sync_playwright() as playwright:
        try:
            chromium = launch_chromium(playwright)
        except MissingBrowser as missing:
            pytest.fail(str(missing), pytrace=False)
        # One context for the session: the UI's scripts are fetched once. The community
        # newsletter dialog that `dagster dev` shows on first visit is dismissed as "Skip" would.
        context = chromium.new_context(viewport={"width": 1440, "height": 900})
        context.add_init_script("window.localStorage.setItem('communityNux', 'true')")
        try:
            yield context
        finally:
            context.close()
            chromium.close()
