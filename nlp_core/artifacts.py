"""Trained models on disk: a joblib file beside a ``model.json`` version stamp."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def save_stamped(model: object, directory: Path, name: str, version: str,
                 **details: Any) -> Path:
    """Write ``model.joblib`` and its ``model.json`` stamp (name, version, time, ``details``)."""
    import joblib

    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, directory / "model.joblib")
    stamp = {"model": name, "version": version,
             "created": datetime.now(UTC).isoformat(timespec="seconds"), **details}
    (directory / "model.json").write_text(json.dumps(stamp, indent=2) + "\n")
    return directory


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
