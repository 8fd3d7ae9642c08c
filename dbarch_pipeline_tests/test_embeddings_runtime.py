"""The embedding runtimes: ONNX Runtime on the exported weights against sentence-transformers (torch).

For many generated statements (the benchmark's web-application shapes, seed printed; plus raw text
with literals, comments, odd whitespace, and statements longer than the model's 256 tokens, which
both must truncate alike) the onnx vectors, one at a time and in padded batches, have cosine
>= 0.9999 with torch's: that is what makes vectors stored by either runtime comparable. Also: the
runtime setting (DBARCH_EMBED_RUNTIME) is obeyed, a wrong value is a clear error, and the export is
published once under a file lock (a second exporter waits, then finds it). Skipped, with
the reason, where onnxruntime is not installed.
"""

from __future__ import annotations

import fcntl
import os
import random
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dbarch_pipeline.errors import DbarchError
from dbarch_pipeline.memory import embeddings
from dbarch_pipeline.memory.embeddings import RUNTIME_ENV, Embedder

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: only the torch runtime can run here")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_embeddings import sql_statements  # noqa: E402

SEED = int(os.environ.get("DBARCH_TEST_SEED") or random.randrange(1 << 30))
WORDS = ["orders", "customer_id", "created_at", "lower(email)", "'paid'", "42", "3.14", "-- note", "/* hint */",
         "JOIN", "WHERE", "GROUP BY", "coalesce(x, $1)", "ILIKE '%ab%'", "NOW()", "\t", "\n", "ÉTÉ", "日本"]


def _raw_texts(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        words = rng.choices(WORDS, k=rng.randint(1, 30))
        out.append(("  " if rng.random() < 0.3 else "") + " ".join(words))
    return out


def _long_texts(rng: random.Random, n: int) -> list[str]:
    """Longer than max_seq_length tokens: truncated by both."""
    return [" ".join(rng.choices(WORDS, k=rng.randint(300, 500))) for _ in range(n)]


def test_onnx_vectors_match_sentence_transformers():
    print(f"seed {SEED} (replay: DBARCH_TEST_SEED={SEED})")
    rng = random.Random(SEED)
    short = sql_statements(80, seed=SEED) + _raw_texts(rng, 16)
    long = _long_texts(rng, 2)
    texts = short + long
    path = Embedder().model_path
    model = embeddings._load(path)
    # the long texts alone, so that they pad no short one (which only costs time)
    torch_vectors = np.concatenate([np.asarray(model.encode(
        part, batch_size=size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False))
        for part, size in ((short, 16), (long, 1))])
    onnx = embeddings._load_onnx(path)
    batched = np.concatenate([onnx.encode(short, batch_size=16), onnx.encode(long, batch_size=1)])
    single = np.stack([onnx.encode([t])[0] for t in texts])
    for name, vectors in (("batched", batched), ("one at a time", single)):
        assert vectors.shape == torch_vectors.shape and vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        cosines = np.sum(vectors * torch_vectors, axis=1)
        worst = int(np.argmin(cosines))
        print(f"{name}: min cosine {cosines[worst]:.7f} over {len(texts)} texts")
        assert cosines[worst] >= 0.9999, f"seed {SEED}, {name}: cosine {cosines[worst]:.6f} for {texts[worst]!r}"
    # the nearest neighbours agree too, not only each vector with its twin
    assert (np.argsort(-(batched @ batched.T), axis=1)[:, :3]
            == np.argsort(-(torch_vectors @ torch_vectors.T), axis=1)[:, :3]).mean() > 0.99, f"seed {SEED}"


def test_runtime_setting(monkeypatch):
    monkeypatch.setenv(RUNTIME_ENV, "tensorflow")
    with pytest.raises(DbarchError, match="onnx or torch"):
        embeddings.requested_runtime()
    for forced in ("torch", "onnx", " ONNX "):
        monkeypatch.setenv(RUNTIME_ENV, forced)
        assert embeddings.requested_runtime() == forced.strip().lower()
    monkeypatch.delenv(RUNTIME_ENV)
    assert embeddings.requested_runtime() is None
    # chosen without the setting: onnx, since onnxruntime is installed and the model exports offline
    assert Embedder().runtime == "onnx"
    assert "onnxruntime" in Embedder().describe()


def test_export_is_cached_and_atomic():
    """The cache file is published whole, by rename under a lock: no temporary file is left, and a
    second call finds it exported (0 s) instead of exporting again."""
    model_path = Embedder().model_path
    embeddings._load_onnx(model_path)       # exports it into this DBARCH_HOME unless done before
    path = embeddings.onnx_cache_path(model_path)
    assert path.exists()
    assert embeddings.export_onnx(model_path, path) == 0.0
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_export_waits_for_another_exporter(tmp_path):
    """While another process holds the export lock, an export waits; when the other one has published
    the file, it returns without exporting (0 s) and leaves the published file as it was."""
    target = tmp_path / "models" / "m.onnx"
    target.parent.mkdir()
    result: list[float] = []
    with open(target.with_suffix(".lock"), "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)      # another exporter, mid-export
        waiter = threading.Thread(target=lambda: result.append(
            embeddings.export_onnx(Embedder().model_path, target)))
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive() and not result      # blocked on the lock
        target.write_bytes(b"published by the other exporter")
    waiter.join(timeout=10)
    assert result == [0.0]
    assert target.read_bytes() == b"published by the other exporter"
