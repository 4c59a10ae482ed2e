"""The README's "use the engine without Dagster" example, run as a user would: no Dagster."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from batch_workflows.client import BatchClient
from batch_workflows.lifecycle import iter_lifecycle_batches

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- engine-example"
# Run before the example: any import of Dagster (or our Dagster packages) fails.
NO_DAGSTER = (
    "import sys\n"
    "for name in ('dagster', 'dagster_aws', 'assets', 'resources'):\n"
    "    sys.modules[name] = None\n"
)


def _example() -> str:
    text = README.read_text()
    match = re.search(re.escape(MARKER) + r".*?-->\n```python\n(.*?)```", text, re.S)
    assert match, "README has no engine example"
    return match.group(1)


def test_readme_engine_example_runs_without_dagster(server, tmp_path):
    env = {**os.environ, "BATCH_BASE_URL": server.base_url}
    env.pop("BATCH_API_KEY", None)
    run = subprocess.run([sys.executable, "-c", NO_DAGSTER + _example()], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("{'succeeded': 3} "), run.stdout
    results = Path(run.stdout.split(" ", 2)[-1].strip())
    assert results.is_file() and results.is_relative_to(tmp_path)
    # Again: the same content re-attaches to the same batches.
    again = subprocess.run([sys.executable, "-c", NO_DAGSTER + _example()], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout == run.stdout, again.stderr[-3000:]
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        assert len(list(iter_lifecycle_batches(client, asset="notebook"))) == 1
