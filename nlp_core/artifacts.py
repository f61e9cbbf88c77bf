"""Trained linear text models on disk: ``model.json`` (version stamp and settings), the frozen
word and char TF-IDF vectorisers (JSON + ``.npy``) and the weights (``.npy``). Nothing is
pickled, so a model dir is safe to read and loading needs no scikit-learn."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from nlp_core.integrity import verify_manifest, write_manifest
from nlp_core.text import tokenize
from nlp_core.tfidf import FrozenTfidf

TextModelParts = tuple[dict[str, Any], FrozenTfidf, FrozenTfidf, np.ndarray, np.ndarray]


def save_text_model(directory: Path, name: str, version: str, *, word: FrozenTfidf,
                    char: FrozenTfidf, coef: np.ndarray, intercept: np.ndarray,
                    **details: Any) -> Path:
    """Write a model's vectorisers and weights, and the ``model.json`` stamp (name, version,
    creation time, ``details``) last, so a half-written dir never loads."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.json").unlink(missing_ok=True)
    (directory / "model.joblib").unlink(missing_ok=True)  # the pickled format before v2
    word.save(directory, "word")
    char.save(directory, "char")
    np.save(directory / "coef.npy", coef, allow_pickle=False)
    np.save(directory / "intercept.npy", intercept, allow_pickle=False)
    stamp = {"model": name, "version": version,
             "created": datetime.now(UTC).isoformat(timespec="seconds"), **details}
    (directory / "model.json").write_text(json.dumps(stamp, indent=2) + "\n")
    write_manifest(directory)
    return directory


def load_text_model(directory: Path, name: str, version: str) -> TextModelParts:
    """``(stamp, word, char, coef, intercept)`` of a model written by :func:`save_text_model`;
    ``ValueError`` unless its stamp names ``name`` at ``version``, and
    :class:`~nlp_core.integrity.DamagedModelError` if a file is not as written."""
    verify_manifest(directory, f"Rebuild it with `amlbot train {name}`.")
    stamp: dict[str, Any] = json.loads((directory / "model.json").read_text())
    if stamp.get("model") != name or stamp.get("version") != version:
        raise ValueError(f"{directory}: not a {name} v{version} model: {stamp}")
    return (stamp, FrozenTfidf.load(directory, "word", tokenize),
            FrozenTfidf.load(directory, "char"),
            np.load(directory / "coef.npy", allow_pickle=False),
            np.load(directory / "intercept.npy", allow_pickle=False))
