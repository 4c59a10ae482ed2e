"""The local OpenAI-compatible batch engine (`batch-workflows serve`), DESIGN.md §5."""
