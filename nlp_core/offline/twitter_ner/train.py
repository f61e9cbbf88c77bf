"""Training entry points of the Twitter NER: ``amlbot train ner`` saves under
``<data_dir>/models/ner``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nlp_core.ner import conlleval
from nlp_core.offline.twitter_ner.conll import read_conll
from nlp_core.offline.twitter_ner.model import Progress, TwitterNER
from nlp_core.workspace import Workspace


def model_dir(workspace: Workspace) -> Path:
    """Where the trained Twitter NER model lives: ``<data_dir>/models/ner``."""
    return workspace.data_dir / "models" / "ner"


def train_ner(workspace: Workspace, progress: Progress | None = None,
              **params: Any) -> TwitterNER:
    """Train on ``twitter_ner/train.txt`` (own dev split for early stopping), score on
    ``validation.txt`` and save under ``<data_dir>/models/ner``.

    ``params`` go to :class:`TwitterNER`; encoder features are cached under
    ``<data_dir>/cache/ner`` unless ``cache_dir`` says otherwise."""
    x, y = read_conll(workspace.require("twitter_ner/train.txt"))
    params.setdefault("cache_dir", workspace.data_dir / "cache" / "ner")
    model = TwitterNER(**params).fit(x, y, progress=progress)
    metrics: dict[str, Any] = {"dev_f1": model.dev_f1_}
    try:
        vx, vy = read_conll(workspace.require("twitter_ner/validation.txt"))
    except FileNotFoundError:
        pass
    else:
        result = conlleval.score(vy, model.predict(vx))
        metrics["validation"] = {k: result[k] for k in ("precision", "recall", "f1")}
    model.metrics_ = metrics
    model.save(model_dir(workspace), metrics=metrics)
    return model


def load_or_train_ner(workspace: Workspace, progress: Progress | None = None) -> TwitterNER:
    """The saved model from ``<data_dir>/models/ner``, training it first if absent or stale."""
    directory = model_dir(workspace)
    if (directory / "model.json").is_file():
        try:
            return TwitterNER.load(directory)
        except (ValueError, KeyError, OSError, RuntimeError):
            pass  # an incompatible or broken artefact: retrain
    return train_ner(workspace, progress=progress)
