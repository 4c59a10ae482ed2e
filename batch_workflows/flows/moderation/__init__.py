"""The moderation flow's plain logic: a day's backlog → batch requests → verdicts and figures.

::

    <day>.jsonl ──read (backlog)──▶ items ──judge.request──▶ batch lines ──lifecycle──▶ results
                      │                                                                  │
                      └── item table (items.parquet) ──────┬──────── judge.parse ◀────────┘
                                                           ▼
                              verdicts.parquet + flagged.parquet + VerdictReport (metrics)

Modules: ``taxonomy`` (the policy file), ``backlog`` (a day's file), ``items`` (the side table),
``llm`` and ``embedding`` (each strategy's requests and reading), ``judges`` (the strategies as
two hooks, request and parse), ``calibration`` (the embedding thresholds), ``keyword`` (the
baseline), ``metrics``, ``verdicts`` (the streamed join), ``requests``, ``settings``,
``calibrate`` (the command that fits the thresholds on a labelled backlog).
"""
