"""Benchmark: the same all-MiniLM-L6-v2 weights on torch (what dbarch runs) and on ONNX Runtime.

The bundled model's BERT is exported once with torch.onnx (TorchScript exporter, dynamic batch and
sequence axes) to a temporary file; ONNX Runtime runs it on one intra-op thread, with the model's own
tokenizer and the same mean pooling and normalization as sentence-transformers. For `--statements`
generated normalized statements (the shapes of bench_embeddings.py) it embeds each one alone with
both runtimes and prints the cosine between the two vectors (min and 1st percentile: an honest swap
needs >= 0.999), the wall and CPU time per statement (p50/p95), the model load against the session
creation, and the load average. Asserts nothing. Needs the `bench` extra (onnx, onnxruntime).

Run alone: .venv/bin/python benchmarks/bench_embedding_runtimes.py [--statements 300] [--seed 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

from bench_embeddings import sql_statements  # noqa: E402
from dbarch_pipeline.memory.embeddings import Embedder, _load  # noqa: E402
from dbarch_pipeline.memory.fingerprint import normalize  # noqa: E402

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def export(model, path: str) -> float:
    import torch

    class LastHidden(torch.nn.Module):
        # transformers 5's BertModel.forward takes its inputs by keyword only
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    sample = model.tokenizer(["SELECT 1 FROM t WHERE a = $1"], return_tensors="pt")
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(LastHidden(model[0].auto_model.eval()), tuple(sample[n] for n in INPUTS), path,
                          input_names=INPUTS, output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                          dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*INPUTS, "last_hidden_state"]})
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=300)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    import onnxruntime as ort
    import torch

    torch.set_num_threads(1)     # as dbarch runs it (DBARCH_EMBED_THREADS default)
    started = time.perf_counter()
    embedder = Embedder()
    model = _load(embedder.model_path)
    load_s = time.perf_counter() - started
    tokenizer = model.tokenizer
    with tempfile.TemporaryDirectory(prefix="dbarch-onnx-") as tmp:
        path = os.path.join(tmp, "all-MiniLM-L6-v2.onnx")
        export_s = export(model, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        started = time.perf_counter()
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        session_s = time.perf_counter() - started

        def ort_embed(text: str) -> np.ndarray:
            x = tokenizer([text], return_tensors="np", truncation=True, max_length=model.max_seq_length)
            hidden = session.run(None, {n: x[n].astype(np.int64) for n in INPUTS})[0][0]
            mask = x["attention_mask"][0][:, None].astype(np.float32)
            v = (hidden * mask).sum(0) / mask.sum()
            return v / np.linalg.norm(v)

        statements = [normalize(s) for s in sql_statements(args.statements, seed=args.seed)]
        before = os.getloadavg()
        cosines, times = [], {"torch": ([], []), "onnxruntime": ([], [])}
        for text in statements:
            vectors = []
            for name, embed in (("torch", embedder.embed_one), ("onnxruntime", ort_embed)):
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
