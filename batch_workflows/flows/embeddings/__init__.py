"""The embeddings flow: documents → chunks → /v1/embeddings batches → a Qdrant collection."""
