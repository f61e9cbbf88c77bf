"""Trained linear text models on disk: ``model.json`` (version stamp and settings), frozen
TF-IDF vectorisers (JSON + ``.npy``) and weight arrays (``.npy``). Nothing is pickled, so a model
dir is safe to read and loading needs no scikit-learn."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from nlp_core.tfidf import FrozenTfidf


def save_model(directory: Path, name: str, version: str, *,
               vectorizers: dict[str, FrozenTfidf], arrays: dict[str, np.ndarray],
               **details: Any) -> Path:
    """Write a model: each vectoriser and array under its key, and the ``model.json`` stamp
    (name, version, creation time, ``details``) last, so a half-written dir never loads."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.json").unlink(missing_ok=True)
    (directory / "model.joblib").unlink(missing_ok=True)  # the pickled format before v2
    for key, vectorizer in vectorizers.items():
        vectorizer.save(directory, key)
    for key, array in arrays.items():
        np.save(directory / f"{key}.npy", array, allow_pickle=False)
    stamp = {"model": name, "version": version,
             "created": datetime.now(UTC).isoformat(timespec="seconds"), **details}
    (directory / "model.json").write_text(json.dumps(stamp, indent=2) + "\n")
    return directory


def read_stamp(directory: Path, name: str, version: str) -> dict[str, Any]:
    """``model.json`` of ``directory``; ``ValueError`` unless it names ``name`` at ``version``."""
    stamp: dict[str, Any] = json.loads((directory / "model.json").read_text())
    if stamp.get("model") != name or stamp.get("version") != version:
        raise ValueError(f"{directory}: not a {name} v{version} model: {stamp}")
    return stamp


def load_array(directory: Path, key: str) -> np.ndarray:
    """An array written by :func:`save_model` (``allow_pickle=False``)."""
    array: np.ndarray = np.load(directory / f"{key}.npy", allow_pickle=False)
    return array
