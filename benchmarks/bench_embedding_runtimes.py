"""Benchmark: the same all-MiniLM-L6-v2 weights on torch (what dbarch runs) and on ONNX Runtime.

dbarch's own export (`embeddings.export_onnx`) writes the bundled model's BERT to a temporary file, and
dbarch's `OnnxModel` runs it on one intra-op thread with the model's own tokenizer and the same mean
pooling and normalization as sentence-transformers (the torch side is sentence-transformers itself). For `--statements`
generated normalized statements (the shapes of bench_embeddings.py) it embeds each one alone with
both runtimes and prints the cosine between the two vectors (min and 1st percentile: an honest swap
needs >= 0.999), the wall and CPU time per statement (p50/p95), the model load against the session
creation, and the load average. Asserts nothing. 

Run alone: .venv/bin/python benchmarks/bench_embedding_runtimes.py [--statements 300] [--seed 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

from bench_embeddings import sql_statements  # noqa: E402
from dbarch_pipeline.memory.embeddings import OnnxModel, _load, default_model_path, export_onnx  # noqa: E402
from dbarch_pipeline.memory.fingerprint import normalize  # noqa: E402

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=300)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)     # as dbarch runs it (DBARCH_EMBED_THREADS default)
    model_path = default_model_path()
    started = time.perf_counter()
    model = _load(model_path)
    load_s = time.perf_counter() - started

    def torch_embed(text: str) -> np.ndarray:
        return np.asarray(model.encode([text], normalize_embeddings=True, convert_to_numpy=True,
                                       show_progress_bar=False)[0], dtype=np.float32)

    with tempfile.TemporaryDirectory(prefix="dbarch-onnx-") as tmp:
        path = Path(tmp) / "all-MiniLM-L6-v2.onnx"
        export_s = export_onnx(model_path, path)      # dbarch's own export, into a throwaway place
        started = time.perf_counter()
        onnx_model = OnnxModel(model_path, path, 1)
        session_s = time.perf_counter() - started

        def ort_embed(text: str) -> np.ndarray:
            return onnx_model.encode([text])[0]

        statements = [normalize(s) for s in sql_statements(args.statements, seed=args.seed)]
        before = os.getloadavg()
        cosines, times = [], {"torch": ([], []), "onnxruntime": ([], [])}
        for text in statements:
            vectors = []
            for name, embed in (("torch", torch_embed), ("onnxruntime", ort_embed)):
                wall, cpu = time.perf_counter(), time.process_time()
                vectors.append(embed(text))
                times[name][0].append((time.perf_counter() - wall) * 1000)
                times[name][1].append((time.process_time() - cpu) * 1000)
            cosines.append(float(vectors[0] @ vectors[1]))
    p = lambda xs, q: sorted(xs)[int(q * (len(xs) - 1))]  # noqa: E731
    print(f"{len(statements)} statements one at a time, 1 thread each (load average {before[0]:.2f} -> "
          f"{os.getloadavg()[0]:.2f}, {os.cpu_count()} cores)")
    print(f"  cosine torch vs onnxruntime: min {min(cosines):.6f}, 1st percentile {p(cosines, 0.01):.6f}")
    print(f"  torch model load {load_s:.2f} s; onnx export {export_s:.2f} s, session creation {session_s:.2f} s")
    for name, (wall, cpu) in times.items():
        print(f"  {name:12} wall p50 {p(wall, 0.5):.1f} / p95 {p(wall, 0.95):.1f} ms, CPU p50 {p(cpu, 0.5):.1f} / "
              f"p95 {p(cpu, 0.95):.1f} ms per statement")


if __name__ == "__main__":
    main()
