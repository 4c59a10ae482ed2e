"""The search-quality evaluation set (bench/search_quality.py) names real topics."""

from __future__ import annotations

import json
from pathlib import Path

from batch_workflows.flows.corpus import pydoc_topics

EVAL = Path(__file__).parent / "data" / "search_eval.json"


def test_eval_set_is_well_formed_and_spread_over_topics():
    queries = json.loads(EVAL.read_text())["queries"]
    topics = pydoc_topics()
    assert len(queries) >= 40
    assert len({q["q"] for q in queries}) == len(queries)  # no question twice
    for q in queries:
        assert q["q"].strip() and q["expected"], q
        assert all(key in topics for key in q["expected"]), q
    assert len({q["expected"][0] for q in queries}) >= 40  # many different answers
