"""Query embeddings: the model, its worker processes, the shared server, the pool and the batcher."""
