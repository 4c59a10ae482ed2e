"""The local OpenAI-compatible batch engine (`batch-workflows serve`).

The OpenAI Files and Batches APIs plus real-time embeddings and chat, on local models or an
upstream real-time endpoint: state in SQLite, file bodies on disk, uploads and downloads
streamed, and crash-safe batch execution (killed and restarted, every `custom_id` ends with
exactly one result line). `launch` starts one in the background for a caller.
"""
