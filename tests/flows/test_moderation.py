"""The moderation flow's plain logic: policy, backlog, the llm strategy's prompt and strict
reading, the embedding strategy's anchors and thresholds, metrics, and the streamed verdicts."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch_workflows.errors import ConfigurationError, InvalidInputError
from batch_workflows.flows.moderation import llm
from batch_workflows.flows.moderation.backlog import day_file, day_of, read_backlog
from batch_workflows.flows.moderation.calibration import (
    NEVER,
    Calibration,
    best_threshold,
    load_calibration,
    store_calibration,
)
from batch_workflows.flows.moderation.embedding import AnchorScorer, anchor_requests, anchor_texts
from batch_workflows.flows.moderation.evaluate import SAMPLE_BACKLOG, labelled_items
from batch_workflows.flows.moderation.items import ItemTableWriter
from batch_workflows.flows.moderation.judges import EmbeddingJudge, LlmJudge
from batch_workflows.flows.moderation.keyword import KeywordMatcher
from batch_workflows.flows.moderation.metrics import Confusion, Evaluation
from batch_workflows.flows.moderation.requests import day_requests
from batch_workflows.flows.moderation.taxonomy import OPENAI_CATEGORIES, load_policy
from batch_workflows.flows.moderation.verdicts import write_verdicts
from batch_workflows.profiles import CHAT, EMBEDDINGS
from batch_workflows.results.schema import SCHEMA

POLICY = load_policy()
NAMES = frozenset(POLICY.names)


def test_default_policy_is_openais_taxonomy_with_definitions_and_examples():
    assert tuple(POLICY.names) == OPENAI_CATEGORIES
    assert all(c.description and len(c.examples) >= 3 and c.keywords for c in POLICY.categories)
    assert len(POLICY.version) == 16 and POLICY.version == load_policy(POLICY.source).version


def test_a_json_policy_replaces_it_and_bad_files_say_what_is_wrong(tmp_path):
    path = tmp_path / "spam.json"
    path.write_text(json.dumps({"name": "shop", "categories": [
        {"name": "spam", "description": "Unsolicited advertising.", "examples": ["Buy now!!"]}]}))
    policy = load_policy(path)
    assert policy.names == ["spam"] and policy.categories[0].examples == ("Buy now!!",)
    path.write_text(json.dumps({"name": "x", "categories": [
        {"name": "a", "description": "d"}, {"name": "a", "description": "d"}]}))
    with pytest.raises(ConfigurationError, match="listed twice"):
        load_policy(path)
    yaml_path = tmp_path / "p.yaml"
    yaml_path.write_text("name: x\ncategories:\n  - name: a\n")
    with pytest.raises(ConfigurationError, match=r"categories\[0\]: 'description'"):
        load_policy(yaml_path)
    (tmp_path / "p.txt").write_text("name: x")
    with pytest.raises(ConfigurationError, match="expected a .yaml"):
        load_policy(tmp_path / "p.txt")


def test_the_shipped_sample_covers_every_category_and_hard_negatives():
    rows = list(labelled_items(SAMPLE_BACKLOG, POLICY))
    days = {day for day, _ in rows}
    assert len(days) >= 7 and len(rows) >= 300
    counts = {n: sum(n in item.labels for _, item in rows) for n in POLICY.names}
    assert min(counts.values()) >= 8, counts
    safe = {item.text for _, item in rows if item.labels == ()}
    assert len(safe) > len(rows) / 2
    for hard in ("I killed it at my talk today, the whole room was on their feet.",
                 "What's the maximum safe dose of ibuprofen for an adult in a day?",
                 "In Fortnite I eliminated the whole squad with one grenade!"):
        assert hard in safe
    assert len({item.id for _, item in rows}) == len(rows)


def test_backlog_files_in_three_formats_and_their_problems(tmp_path):
    (tmp_path / "2025-03-01.jsonl").write_text(
        '{"id": 1, "text": "hello", "labels": []}\n{"id": "b", "text": "x", "labels": ["hate"]}\n')
    (tmp_path / "2025-03-02.csv").write_text(
        'id,text,labels\n1,"hi, there",\n2,go away,harassment|violence\n')
    pq.write_table(pa.table({"id": ["p"], "text": ["t"], "created_at": ["2025-03-03T01:00:00Z"]}),
                   tmp_path / "2025-03-03.parquet")
    (tmp_path / "notes.jsonl").write_text("{}\n")
    assert day_of("2025-03-01.jsonl") == "2025-03-01" and day_of("notes.jsonl") is None
    items = list(read_backlog(day_file(str(tmp_path), "2025-03-01").uri, POLICY.names))
    assert [(i.id, i.labels, i.line) for i in items] == [("1", (), 1), ("b", ("hate",), 2)]
    items = list(read_backlog(day_file(str(tmp_path), "2025-03-02").uri, POLICY.names))
    assert [(i.text, i.labels) for i in items] == [("hi, there", ()),
                                                   ("go away", ("harassment", "violence"))]
    (item,) = read_backlog(day_file(str(tmp_path), "2025-03-03").uri, POLICY.names)
    assert item.labels is None and item.created_at == "2025-03-03T01:00:00Z"  # unlabelled
    assert day_file(str(tmp_path), "2025-03-04") is None  # no file: a day with no items
    bad = tmp_path / "2025-03-05.jsonl"
    bad.write_text('{"id": "a", "text": ""}\n{"text": "no id"}\n{"id": "c", "text": "t", '
                   '"labels": ["spam"]}\nnot json\n')
    with pytest.raises(InvalidInputError) as err:
        list(read_backlog(str(bad), POLICY.names))
    assert [(p.line, p.field) for p in err.value.problems] == [
        (1, "text"), (2, "id"), (3, "labels"), (4, None)]
    (tmp_path / "2025-03-01.csv").write_text("id,text\n1,x\n")
    with pytest.raises(ConfigurationError, match="2 backlog files for 2025-03-01"):
        day_file(str(tmp_path), "2025-03-01")


def test_policy_prompt_states_the_format_at_top_and_bottom_and_the_schema_is_an_enum():
    judge = LlmJudge(POLICY, "SmolLM2-135M-Instruct")
    request = judge.request("item:1", "I killed it at my talk")
    body = request["body"]
    assert request["url"] == CHAT and body["temperature"] == 0
    system, user = body["messages"][0]["content"], body["messages"][1]["content"]
    fmt = llm.output_format(POLICY)
    assert system.startswith(fmt) and system.endswith(fmt) and user.endswith(fmt)
    assert "I killed it at my talk" in user and "violence/graphic:" in system
    schema = body["response_format"]["json_schema"]
    assert schema["strict"] is True
    props = schema["schema"]["properties"]
    assert props["categories"]["items"]["enum"] == POLICY.names
    assert props["categories"]["maxItems"] == len(POLICY.names)
    assert schema["schema"]["required"] == ["flagged", "categories", "rationale"]


@pytest.mark.parametrize(("content", "finish", "reason"), [
    ('{"flagged": true, "categories": ["violence"], "rationale": "a threat"}', "stop", None),
    ('{"flagged": false, "categories": [], "rationale": "fine"}', "stop", None),
    ('{"flagged": true, "categories": ["viol', "length", "cut off at max_tokens"),
    ("Sure! Here is the JSON", "stop", "not JSON"),
    ("[]", "stop", "not a JSON object"),
    ('{"flagged": true, "categories": ["violence"]}', "stop", "fields"),
    ('{"flagged": "yes", "categories": [], "rationale": ""}', "stop", "not a boolean"),
    ('{"flagged": true, "categories": ["spam"], "rationale": ""}', "stop", "unknown categories"),
    ('{"flagged": true, "categories": [], "rationale": "hmm"}', "stop", "disagrees"),
    ("", "stop", "empty answer"),
])
def test_answers_are_read_strictly(content, finish, reason):
    answer = llm.parse_answer(content, finish, NAMES)
    if reason is None:
        assert answer.status == "ok" and answer.flagged == bool(answer.categories)
    else:
        assert answer.status == "unparsed" and reason in answer.reason
        assert answer.flagged is None and answer.categories is None


def test_anchor_requests_and_mean_cosine_scores():
    anchors = anchor_texts(POLICY)
    assert len(anchors) == sum(len(c.examples) for c in POLICY.categories)
    (request,) = anchor_requests(POLICY, "all-MiniLM-L6-v2")
    assert request["custom_id"] == "anchors:0" and request["url"] == EMBEDDINGS
    assert request["body"]["input"] == [t for _, t in anchors]
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(anchors), 8)).astype(np.float32)
    scorer = AnchorScorer(POLICY, vectors)
    item = rng.normal(size=(1, 8))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = [np.mean(unit[[i for i, (k, _) in enumerate(anchors) if k == c]]
                        @ (item[0] / np.linalg.norm(item[0]))) for c in range(13)]
    assert np.allclose(scorer.scores(item)[0], expected, atol=1e-5)


def test_thresholds_maximise_f1_and_are_stored_per_model_and_policy_version(tmp_path):
    scores = np.array([0.9, 0.8, 0.55, 0.5, 0.2])
    assert best_threshold(scores, np.array([1, 1, 1, 0, 0], bool)) == pytest.approx(0.525)
    assert best_threshold(scores, np.zeros(5, bool)) == NEVER
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(open(POLICY.source).read())
    policy = load_policy(policy_file)
    with pytest.raises(ConfigurationError, match="no calibration"):
        load_calibration(policy, "m")
    cal = Calibration("m", policy.version, dict.fromkeys(policy.names, 0.4))
    assert store_calibration(policy, cal) == tmp_path / "policy.calibration.json"
    assert load_calibration(policy, "m").thresholds == cal.thresholds
    with pytest.raises(ConfigurationError, match="no thresholds for model 'other'"):
        load_calibration(policy, "other")
    policy_file.write_text(policy_file.read_text().replace("any target.", "anyone."))
    with pytest.raises(ConfigurationError, match="fitted for policy version"):
        load_calibration(load_policy(policy_file), "m")


def test_confusion_figures_and_evaluation_leave_unscored_items_out():
    c = Confusion(tp=6, fp=2, fn=3, tn=9)
    assert (c.precision, c.recall, c.fpr) == (0.75, 6 / 9, 2 / 11)
    assert c.f1 == pytest.approx(2 * 0.75 * (6 / 9) / (0.75 + 6 / 9))
    ev = Evaluation(["hate", "violence"])
    ev.add(["hate"], ["hate"])
    ev.add([], ["violence"])
    ev.add(None, ["hate"])  # unparsed or failed: not scored
    ev.add(["violence"], None)  # unlabelled: not counted at all
    assert (ev.scored, ev.not_scored, ev.flagged.tp, ev.flagged.fn) == (2, 1, 1, 1)
    assert ev.per_category["violence"].fn == 1 and "| hate | 1 | 1 |" in ev.confusion_markdown()


def test_keyword_baseline_matches_word_starts():
    matcher = KeywordMatcher(POLICY)
    assert "violence" in matcher.categories("I killed it at my talk")  # why it is a baseline
    assert matcher.categories("What a lovely skillet") == []


# --- verdicts from results ------------------------------------------------------------------

def _results(path, rows):
    """A results Parquet in the lifecycle's schema (what collect publishes)."""
    cols = {f.name: [r.get(f.name) for r in rows] for f in SCHEMA}
    pq.write_table(pa.table(cols, schema=SCHEMA), path)


def _items(tmp_path, items):
    from batch_workflows.flows.moderation.backlog import Item

    table = ItemTableWriter(tmp_path / "items.parquet", row_group=2)
    judge = LlmJudge(POLICY, "m")
    lines = list(day_requests([Item(i, t, None, lab, n) for n, (i, t, lab) in
                               enumerate(items, 1)], table, judge))
    table.close()
    return table.path, lines


@pytest.mark.parametrize("part_bytes", [1 << 30, 1])  # one part, and one spilled part per id hash
def test_llm_verdicts_one_row_per_item_ok_unparsed_failed(tmp_path, part_bytes):
    items_path, lines = _items(tmp_path, [("a", "you idiot", ["harassment"]), ("b", "hi", []),
                                          ("c", "?", None), ("d", "lost", ["violence"]),
                                          ("e", "cut", [])])
    assert [r["custom_id"] for r in lines] == ["item:a", "item:b", "item:c", "item:d", "item:e"]
    ok = {"status": "succeeded", "status_code": 200, "model": "m-2025", "finish_reason": "stop"}
    _results(tmp_path / "results.parquet", [
        {**ok, "custom_id": "item:b", "content":
         '{"flagged": false, "categories": [], "rationale": "greeting"}'},
        {**ok, "custom_id": "item:a", "content":
         '{"flagged": true, "categories": ["harassment"], "rationale": "insult"}'},
        {**ok, "custom_id": "item:c", "content": "I cannot help with that."},
        {"custom_id": "item:e", "status": "errored", "error_code": "batch_expired",
         "error_message": "window passed"},
    ])  # item:d has no row at all
    report = write_verdicts(items_path, tmp_path / "results.parquet", LlmJudge(POLICY, "m"),
                            tmp_path / "v.parquet", tmp_path / "f.parquet",
                            part_bytes=part_bytes, work_dir=tmp_path)
    rows = {r["id"]: r for r in pq.read_table(tmp_path / "v.parquet").to_pylist()}
    assert sorted(rows) == ["a", "b", "c", "d", "e"]
    assert (rows["a"]["status"], rows["a"]["flagged"], rows["a"]["categories"]) == (
        "ok", True, ["harassment"])
    assert rows["a"]["model"] == "m-2025" and rows["d"]["model"] == "m"
    assert rows["b"]["flagged"] is False and rows["b"]["rationale"] == "greeting"
    assert (rows["c"]["status"], rows["c"]["reason"], rows["c"]["flagged"]) == (
        "unparsed", "not JSON", None)
    assert rows["d"]["status"] == "failed" and rows["d"]["reason"] == "missing"
    assert rows["e"]["reason"] == "errored: batch_expired: window passed"
    flagged = pq.read_table(tmp_path / "f.parquet").to_pylist()
    assert [(f["id"], f["text"]) for f in flagged] == [("a", "you idiot")]
    d = report.to_dict()
    assert (d["items"], d["ok"], d["unparsed"], d["failed"], d["flagged"]) == (5, 2, 1, 2, 1)
    assert report.accounted and d["per_category"] == {"harassment": 1}
    ev = d["evaluation"]
    assert (ev["scored"], ev["not_scored"]) == (2, 2)  # c is unlabelled
    assert d["unparsed_sample"] == [{"id": "c", "reason": "not JSON"}]


def test_embedding_verdicts_score_every_category_against_calibrated_thresholds(tmp_path):
    from batch_workflows.flows.moderation.backlog import Item

    policy = POLICY
    anchors = anchor_texts(policy)
    dim = len(policy.categories)
    # anchors of category k point along axis k; an item along axis 0 is harassment only
    vectors = np.eye(dim, dtype=np.float32)[[k for k, _ in anchors]]
    table = ItemTableWriter(tmp_path / "items.parquet")
    judge = EmbeddingJudge(policy, "emb", Calibration("emb", policy.version,
                                                      dict.fromkeys(policy.names, 0.5)))
    lines = list(day_requests([Item("x", "insult", labels=("harassment",)),
                               Item("y", "weather", labels=())], table, judge))
    table.close()
    assert [r["custom_id"] for r in lines] == ["item:x", "item:y", "anchors:0"]
    ok = {"status": "succeeded", "status_code": 200, "model": "emb"}
    _results(tmp_path / "r.parquet", [
        {**ok, "custom_id": "anchors:0", "embeddings": vectors.tolist()},
        {**ok, "custom_id": "item:x", "embedding": np.eye(dim)[0].tolist()},
        {**ok, "custom_id": "item:y", "embedding": (-np.eye(dim)[0]).tolist()},
    ])
    report = write_verdicts(table.path, tmp_path / "r.parquet", judge, tmp_path / "v.parquet",
                            tmp_path / "f.parquet")
    rows = {r["id"]: r for r in pq.read_table(tmp_path / "v.parquet").to_pylist()}
    assert rows["x"]["categories"] == ["harassment"] and rows["x"]["flagged"] is True
    assert dict(rows["x"]["scores"])["harassment"] == pytest.approx(1.0)
    assert len(rows["x"]["scores"]) == dim and rows["y"]["flagged"] is False
    assert report.evaluation.flagged.figures()["f1"] == 1.0 and report.orphan_results == 0


def test_llm_requests_decode_greedily_where_the_model_takes_a_temperature():
    policy = load_policy()
    system = llm.policy_prompt(policy)
    assert llm.chat_request("c", "text", policy, "gpt-4o-mini",
                            system=system)["body"]["temperature"] == 0
    # Claude from 4.7 answers 400 to any sampling parameter: the body leaves it out
    body = llm.chat_request("c", "text", policy, "claude-opus-4-7", system=system)["body"]
    assert "temperature" not in body and body["max_tokens"] == llm.DEFAULT_MAX_TOKENS
