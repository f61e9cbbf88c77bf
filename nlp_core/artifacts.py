"""Trained models on disk: a joblib file beside a ``model.json`` version stamp."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def load_stamped(directory: Path, expected: type[T], name: str, version: str) -> T:
    """Load ``model.joblib`` from ``directory`` if its stamp names ``name`` at ``version``.

    Only ever called on our own data dir: joblib files are pickles.
    """
    import joblib

    stamp = json.loads((directory / "model.json").read_text())
    if stamp.get("model") != name or stamp.get("version") != version:
        raise ValueError(f"{directory}: not a {name} v{version} model: {stamp}")
    model = joblib.load(directory / "model.joblib")
    if not isinstance(model, expected):
        raise TypeError(f"{directory}: model.joblib holds a {type(model).__name__}")
    return model
