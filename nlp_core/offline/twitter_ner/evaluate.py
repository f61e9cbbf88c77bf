"""Evaluate the Twitter NER model on a ``token<SPACE>tag`` file (conlleval chunk scores).

Writes ``ner_report.json`` (overall and per-type P/R/F1), a per-type P/R/F1 bar chart
(``ner_confusion.png``, the report writer's figure name) and ``ner_errors.json`` with every missed
or spurious chunk; returns the metrics dict.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nlp_core.ner import conlleval
from nlp_core.workspace import Workspace

LATENCY_TEXT = "Watching the Lakers game in Los Angeles with @mike tonight #NBA"


def chunk_errors(sentences: Sequence[Sequence[str]], gold: Sequence[Sequence[str]],
                 pred: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
    """Every gold chunk the model missed and every predicted chunk that is not in the gold."""
    errors: list[dict[str, Any]] = []
    for i, (words, g, p) in enumerate(zip(sentences, gold, pred, strict=True)):
        gold_chunks = set(conlleval.chunks(g))
        pred_chunks = set(conlleval.chunks(p))
        for kind, chunk_set, other in (("missed", gold_chunks - pred_chunks, pred_chunks),
                                       ("spurious", pred_chunks - gold_chunks, gold_chunks)):
            for label, a, b in sorted(chunk_set, key=lambda c: c[1]):
                overlap = [f"{t}:{' '.join(words[x:y])}" for t, x, y in sorted(other)
                           if x < b and a < y]
                errors.append({
                    "sentence": i, "kind": kind, "type": label, "text": " ".join(words[a:b]),
                    "tokens": [a, b], "overlaps": overlap, "tweet": " ".join(words),
                })
    return errors


def per_type_figure(metrics: dict[str, Any]) -> Any:
    """A bar chart of per-type precision, recall and F1 (a matplotlib Figure, off-screen)."""
    import numpy as np
    from matplotlib.figure import Figure

    per_type = metrics["per_type"]
    types = sorted(per_type, key=lambda t: -per_type[t]["f1"])
    x = np.arange(len(types))
    fig = Figure(figsize=(9, 4), dpi=100)
    ax = fig.add_subplot()
    for k, (name, offset) in enumerate((("precision", -0.27), ("recall", 0.0),
                                        ("f1", 0.27))):
        ax.bar(x + offset, [per_type[t][name] for t in types], width=0.27, label=name,
               color=("#9ecae1", "#fdae6b", "#3182bd")[k])
    ax.set_xticks(x, [f"{t}\n({per_type[t]['support']})" for t in types], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title(f"Twitter NER per type (overall F1 {metrics['f1']:.3f})")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def measure_latency(model: Any, text: str = LATENCY_TEXT,
                    repeats: int = 20) -> tuple[float, float]:
    """Median wall and CPU milliseconds of ``model.extract(text)`` after one warm-up call (CPU
    time is what contention on a shared machine inflates least)."""
    model.extract(text)
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        model.extract(text)
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def run(data: Path | None, model_dir: Path | None, out_dir: Path,
        workspace: Workspace) -> dict[str, Any]:
    """Score the model in ``model_dir`` (default: the trained one in the data dir, trained now if
    absent) on ``data`` (default: ``twitter_ner/validation.txt``); write the report files into
    ``out_dir`` and return the metrics (``precision``, ``recall``, ``f1``, ``per_type`` ...)."""
    from nlp_core.evaluation.report import write_report
    from nlp_core.offline.twitter_ner.conll import read_conll
    from nlp_core.offline.twitter_ner.model import TwitterNER
    from nlp_core.offline.twitter_ner.train import load_or_train_ner

    path = data if data is not None else workspace.require("twitter_ner/validation.txt")
    sentences, gold = read_conll(path)
    model = TwitterNER.load(model_dir) if model_dir is not None else load_or_train_ner(workspace)
    started = time.perf_counter()
    pred = model.predict(sentences)
    seconds = time.perf_counter() - started
    scores = conlleval.score(gold, pred)
    metrics: dict[str, Any] = {
        "precision": round(scores["precision"], 4),
        "recall": round(scores["recall"], 4),
        "f1": round(scores["f1"], 4),
        "accuracy": round(scores["accuracy"], 4),
        "per_type": {t: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()}
                     for t, s in scores["per_type"].items()},
        "sentences": len(sentences),
        "tokens": scores["tokens"],
        "data": str(path),
        "model": {k: getattr(model, "stamp_", {}).get(k)
                  for k in ("model", "version", "created", "train_seconds", "dev_f1")},
        "predict_seconds": round(seconds, 2),
    }
    wall_ms, cpu_ms = measure_latency(model)
    metrics["latency_ms"] = round(wall_ms, 2)
    metrics["latency_cpu_ms"] = round(cpu_ms, 2)
    errors = chunk_errors(sentences, gold, pred)
    figure = per_type_figure(metrics)
    write_report(out_dir, "ner", metrics, errors, figure)  # also closes the figure
    return metrics
