"""``amlbot eval intent``: route and detail accuracy of the intent model (and, for programming
questions, the tag model's language), with a confusion matrix and every miss."""

from __future__ import annotations

import csv
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nlp_core.workspace import Workspace

ROUTES = ("chitchat", "programming", "tool")


@dataclass(frozen=True)
class RoutingCase:
    """One line of a routing TSV: where a text should go, and (optionally) the detail."""

    route: str
    detail: str
    text: str


def read_routing_tsv(path: Path) -> list[RoutingCase]:
    """Cases of a TSV with header ``route<TAB>detail<TAB>text``; route is chitchat, programming
    or tool; detail is a programming question's language or the tool name (may be empty)."""
    cases: list[RoutingCase] = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        if reader.fieldnames is None or not {"route", "detail", "text"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected the header route<TAB>detail<TAB>text")
        for line, row in enumerate(reader, start=2):
            route = (row["route"] or "").strip().lower()
            if route not in ROUTES:
                raise ValueError(f"{path}:{line}: route must be one of {ROUTES}, not {route!r}")
            text = (row["text"] or "").strip()
            if text:
                cases.append(RoutingCase(route, (row["detail"] or "").strip().lower(), text))
    return cases


def route_of(intent: str) -> str:
    """``tool:<name>`` -> ``tool``; other intents are their own route."""
    return intent.split(":", 1)[0]


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray,
                               bins: int = 10) -> float:
    """|accuracy - confidence| averaged over equal-width confidence bins, weighted by size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        mask = (confidence > low) & (confidence <= high)
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total)


def run(data: Path | None, model_dir: Path | None, out_dir: Path, workspace: Workspace,
        *, tool_examples: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Score intents on a routing TSV (``data``) or, by default, on the held-out part of the
    intent corpus (``tool_examples`` adds the tools' held-out phrasings); write the report."""
    from nlp_core.evaluation.report import confusion_figure, write_report
    from nlp_core.intent import (
        CHITCHAT,
        IntentClassifier,
        build_corpus,
        load_or_train_intent,
        tool_intent,
    )

    cases = read_routing_tsv(data) if data is not None else []  # a bad file fails first
    model = (IntentClassifier.load(model_dir) if model_dir
             else load_or_train_intent(workspace, tool_examples=tool_examples))
    if data is None:
        corpus = build_corpus(workspace, tool_examples)
        texts, gold_intents = corpus.test_texts, corpus.test_intents
        details = ["" for _ in texts]
        source = "held-out part of the intent corpus"
    else:
        texts = [c.text for c in cases]
        gold_intents = [tool_intent(c.detail) if c.route == "tool" and c.detail else c.route
                        for c in cases]
        details = [c.detail for c in cases]
        source = str(data)

    started = time.perf_counter()
    proba = model.predict_proba(texts)
    seconds = time.perf_counter() - started
    classes = [str(c) for c in model.classes_]
    best = proba.argmax(axis=1)
    predicted = [classes[k] for k in best]
    confidence = proba[np.arange(len(texts)), best]

    gold_routes = [route_of(i) for i in gold_intents]
    pred_routes = [route_of(i) for i in predicted]
    route_ok = np.array([g == p for g, p in zip(gold_routes, pred_routes, strict=True)])
    # Detail: the tool's name, or the programming question's language from the tag model.
    pred_details = ["" for _ in texts]
    tool_rows = [i for i, p in enumerate(predicted) if p.startswith("tool:")]
    for i in tool_rows:
        pred_details[i] = predicted[i].split(":", 1)[1]
    language_rows = [i for i, (r, d) in enumerate(zip(gold_routes, details, strict=True))
                     if r == "programming" and d]
    if language_rows:
        from nlp_core.tags import load_or_train_tags

        tags = load_or_train_tags(workspace)
        subset = [texts[i] for i in language_rows]
        embeddings = None
        if tags.use_embeddings:
            from nlp_core.tags import embed_cached

            embeddings = embed_cached(subset, workspace)
        for i, language in zip(language_rows, tags.predict_language(subset, embeddings),
                               strict=True):
            pred_details[i] = language or ""
    detail_rows = [i for i, d in enumerate(details) if d]
    detail_ok = {i: route_ok[i] and pred_details[i] == details[i] for i in detail_rows}
    intent_ok = np.array([g == p for g, p in zip(gold_intents, predicted, strict=True)])
    threshold = workspace.intent_threshold
    confident = confidence >= threshold

    metrics: dict[str, Any] = {
        "n": len(texts),
        "accuracy": float(intent_ok.mean()) if len(texts) else float("nan"),
        "route_accuracy": float(route_ok.mean()) if len(texts) else float("nan"),
        "n_with_detail": len(detail_rows),
        "detail_accuracy": (float(np.mean(list(detail_ok.values()))) if detail_rows
                            else float("nan")),
        "expected_calibration_error": expected_calibration_error(confidence, intent_ok),
        "intent_threshold": threshold,
        "clarify_rate": float((~confident).mean()) if len(texts) else float("nan"),
        "accuracy_when_confident": (float(intent_ok[confident].mean()) if confident.any()
                                    else float("nan")),
        "predict_ms_per_text": 1000 * seconds / max(1, len(texts)),
    }
    for route in ROUTES:
        rows = [i for i, g in enumerate(gold_routes) if g == route]
        if rows:
            metrics[f"{route}_recall"] = float(route_ok[rows].mean())
    metrics["source"] = source

    errors = []
    for i, text in enumerate(texts):
        if intent_ok[i] and detail_ok.get(i, True):
            continue
        order = np.argsort(-proba[i])[:3]
        errors.append({
            "text": text, "intent": gold_intents[i], "predicted": predicted[i],
            "confidence": float(confidence[i]),
            "alternatives": [[classes[k], float(proba[i, k])] for k in order],
            "detail": details[i], "predicted_detail": pred_details[i],
        })
    labels = sorted(set(gold_intents) | set(predicted), key=lambda s: (s != CHITCHAT, s))
    figure = confusion_figure(gold_intents, predicted, labels=labels,
                              title="Intent (rows: true, columns: predicted)")
    metrics["report"] = str(write_report(out_dir, "intent", metrics, errors, figure))
    return metrics
