"""``amlbot eval tags``: F1 of the tag model and top-1 accuracy of its main language, next to
the NLP course's baseline (TF-IDF of ``text_prepare`` + one-vs-rest logistic regression)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nlp_core.workspace import Workspace


def f1_scores(true: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]],
              classes: Sequence[str], prefix: str = "") -> dict[str, float]:
    """F1 weighted, macro and micro over ``classes`` (tags outside them are ignored)."""
    import warnings

    from sklearn.metrics import f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    binarizer = MultiLabelBinarizer(classes=list(classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown tags of a user's file
        y_true = binarizer.fit_transform(true)
        y_pred = binarizer.transform(predicted)
    return {f"{prefix}f1_{avg}": float(f1_score(y_true, y_pred, average=avg, zero_division=0))
            for avg in ("weighted", "macro", "micro")}


def course_baseline(train_titles: Sequence[str], train_tags: Sequence[Sequence[str]],
                    test_titles: Sequence[str]) -> list[list[str]]:
    """The course's week-1 model: TF-IDF (1-2 grams, min_df 5, max_df 0.9) of
    ``text_prepare`` + one-vs-rest LogisticRegression, tags with probability >= 0.5."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import MultiLabelBinarizer

    from nlp_core.text import text_prepare

    binarizer = MultiLabelBinarizer()
    y = binarizer.fit_transform([list(t) for t in train_tags])
    vectorizer = TfidfVectorizer(min_df=5, max_df=0.9, ngram_range=(1, 2),
                                 token_pattern=r"(\S+)")
    x = vectorizer.fit_transform([text_prepare(t) for t in train_titles])
    model = OneVsRestClassifier(LogisticRegression(solver="liblinear", C=1.0)).fit(x, y)
    predicted = model.predict(vectorizer.transform([text_prepare(t) for t in test_titles]))
    return [list(row) for row in binarizer.inverse_transform(predicted)]


def run(data: Path | None, model_dir: Path | None, out_dir: Path,
        workspace: Workspace, *, baseline: bool = True) -> dict[str, Any]:
    """Score the tag model on ``data`` (a so_tags-style TSV) or, by default, on the fixed test
    split of so_tags/train.tsv that the default model did not train on; write the report."""
    from nlp_core.corpora import load_so_tags
    from nlp_core.evaluation.report import confusion_figure, write_report
    from nlp_core.tags import (
        LANGUAGES,
        TagClassifier,
        embed_cached,
        languages_of,
        load_or_train_tags,
        split_so_tags,
    )

    model = TagClassifier.load(model_dir) if model_dir else load_or_train_tags(workspace)
    train_titles: list[str] = []
    train_tag_lists: list[list[str]] = []
    all_titles, all_tags = load_so_tags(workspace.require("so_tags/train.tsv"))
    train_idx, test_idx = split_so_tags(all_titles)
    if data is None:
        titles = [all_titles[i] for i in test_idx]
        gold = [all_tags[i] for i in test_idx]
        source = "so_tags/train.tsv (fixed test split)"
    else:
        titles, gold = load_so_tags(data)
        source = str(data)
    if baseline:
        train_titles = [all_titles[i] for i in train_idx]
        train_tag_lists = [all_tags[i] for i in train_idx]

    started = time.perf_counter()
    embeddings = embed_cached(titles, workspace) if model.use_embeddings else None
    encode_seconds = time.perf_counter() - started
    started = time.perf_counter()
    predicted, languages, _ = model.predict_all(titles, embeddings)
    scores = model.language_scores(titles, embeddings)
    predict_seconds = time.perf_counter() - started
    top1 = [LANGUAGES[k] for k in scores.argmax(axis=1)]

    classes = [str(c) for c in model.classes_]
    metrics: dict[str, Any] = {"n": len(titles)}
    metrics.update(f1_scores(gold, predicted, classes))
    gold_languages = [languages_of(tags) for tags in gold]
    with_language = [i for i, g in enumerate(gold_languages) if g]
    metrics["n_with_language"] = len(with_language)
    metrics["language_top1_accuracy"] = float(np.mean(
        [top1[i] in gold_languages[i] for i in with_language])) if with_language else float("nan")
    metrics["language_main_accuracy"] = float(np.mean(
        [top1[i] == gold_languages[i][0] for i in with_language])) if with_language else float(
        "nan")
    exact = [set(p) == set(g) for p, g in zip(predicted, gold, strict=True)]
    metrics["exact_match"] = float(np.mean(exact)) if exact else float("nan")
    metrics["predict_ms_per_title"] = 1000 * predict_seconds / max(1, len(titles))
    metrics["encode_ms_per_title"] = 1000 * encode_seconds / max(1, len(titles))
    if baseline:
        baseline_predicted = course_baseline(train_titles, train_tag_lists, titles)
        metrics.update(f1_scores(gold, baseline_predicted, classes, prefix="baseline_"))
    metrics["source"] = source

    errors = [
        {"text": titles[i], "true_tags": gold[i], "predicted_tags": predicted[i],
         "true_languages": gold_languages[i], "predicted_language": languages[i]}
        for i in range(len(titles))
        if set(predicted[i]) != set(gold[i]) or (gold_languages[i] and
                                                top1[i] not in gold_languages[i])
    ]
    figure = confusion_figure([gold_languages[i][0] for i in with_language],
                              [top1[i] for i in with_language], labels=LANGUAGES,
                              title="Main language (rows: true, columns: top-1)")
    metrics["report"] = str(write_report(out_dir, "tags", metrics, errors, figure))
    return metrics
