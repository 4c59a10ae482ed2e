"""The distillation flow: prompts and documents → a teacher model through batches → a
supervised fine-tuning dataset.

Two hooks, in Curator's shape, and the plumbing around them::

    prompts (prompts.py) ──prompt(row): requests.build_requests──▶ /v1/chat/completions lines
                                                 │                  + prompt table (side table)
                                   lifecycle: validate, shard, submit, track, collect
                                                 ▼
    results + prompt table ──parse(row, response): filters.AnswerFilter──▶ kept / dropped(reason)
                                                 ▼
    dataset.build_dataset ──▶ train.jsonl, validation.jsonl (split.py), metadata.parquet,
                              dropped.parquet; card.py ──▶ card.json, README.md

Modules: `settings` (DISTILLATION_*), `prompts` (the shipped sample, the pydoc-grounded tasks,
user files), `requests`, `filters` and `minhash` (the drop reasons), `split`, `examples` (the
line formats), `tokens` (statistics), `dataset` (the streamed writer), `card`, `sft_rules`
(what fine-tuning APIs accept; also ``batch-workflows sft-check``).
"""
