"""LDA topics (scikit-learn's online variational ``LatentDirichletAllocation``) on the
StackOverflow question titles of the data dir (``so_tags/train.tsv``), with held-out
perplexity and a chart of each topic's top words.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
from pydantic import Field

from course_tools import register
from course_tools.base import ToolCommand, ToolContext, ToolParams, ToolResult, ToolSpec
from course_tools.plots import figure_png, new_figure


class LDAParams(ToolParams):
    """Parameters of the LDA tool."""

    n_topics: int = Field(default=12, ge=2, le=100, description="topics")
    n_docs: int = Field(default=20_000, ge=100, le=1_000_000,
                        description="titles used (0.1 held out)")
    max_iter: int = Field(default=10, ge=1, le=500, description="passes over the titles")
    min_df: int = Field(default=5, ge=1, le=1_000, description="minimum document frequency")
    top_words: int = Field(default=8, ge=3, le=30, description="words shown per topic")


def load_titles(path: Path, limit: int, seed: int) -> list[str]:
    """Up to ``limit`` StackOverflow titles of ``path`` (so_tags), in a seeded random order."""
    with path.open(newline="", encoding="utf-8") as fh:
        titles = [row["title"] for row in csv.DictReader(fh, delimiter="\t")]
    order = np.random.default_rng(seed).permutation(len(titles))[:limit]
    return [titles[i] for i in order]


def train_lda(ctx: ToolContext[LDAParams]) -> ToolResult:
    """Fit LDA on the titles and report topics and held-out perplexity."""
    from sklearn.decomposition import LatentDirichletAllocation
    from sklearn.feature_extraction.text import CountVectorizer

    p = ctx.params
    ctx.report(0.02, "loading StackOverflow titles")
    titles = load_titles(ctx.require("so_tags/train.tsv"), p.n_docs, p.seed)
    n_test = max(1, len(titles) // 10)
    vectorizer = CountVectorizer(stop_words="english", min_df=p.min_df, max_df=0.5,
                                 token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z0-9#+.\-]*[a-zA-Z0-9#+]\b")
    X_train = vectorizer.fit_transform(titles[n_test:])
    X_test = vectorizer.transform(titles[:n_test])
    # Online variational Bayes (Hoffman et al.), one pass over the titles per call, so the
    # job reports progress and can be cancelled between passes.
    lda = LatentDirichletAllocation(n_components=p.n_topics, learning_method="online",
                                    batch_size=512, learning_offset=10.0,
                                    total_samples=X_train.shape[0], random_state=p.seed)
    start = time.perf_counter()
    rng = np.random.default_rng(p.seed)
    for i in range(p.max_iter):
        ctx.report(0.05 + 0.85 * i / p.max_iter, f"pass {i + 1}/{p.max_iter}")
        lda.partial_fit(X_train[rng.permutation(X_train.shape[0])])
    seconds = time.perf_counter() - start
    ctx.report(0.92, "scoring held-out titles")
    perplexity = float(lda.perplexity(X_test))
    words = np.array(vectorizer.get_feature_names_out())
    topics = []
    for k, weights in enumerate(lda.components_):
        top = np.argsort(-weights)[: p.top_words]
        topics.append((k, words[top].tolist(), (weights[top] / weights.sum()).tolist()))
    cols = 4
    rows = -(-p.n_topics // cols)
    fig = new_figure(3.0 * cols, 2.2 * rows)
    for k, top_words, top_weights in topics:
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.barh(range(len(top_words))[::-1], top_weights, color="tab:blue")
        ax.set_yticks(range(len(top_words))[::-1], top_words, fontsize=7)
        ax.tick_params(axis="x", labelsize=6)
        ax.set_title(f"topic {k + 1}", fontsize=8)
    ctx.report(1.0, "done")
    lines = [f"topic {k + 1:>2}: {' '.join(w)}" for k, w, _ in topics]
    metrics = {"perplexity": perplexity, "vocabulary": float(len(words)),
               "train_docs": float(X_train.shape[0]), "seconds": seconds}
    text = (f"LDA with {p.n_topics} topics on {X_train.shape[0]} StackOverflow titles "
            f"(vocabulary {len(words)}), {p.max_iter} passes in {seconds:.0f} s; held-out "
            f"perplexity {perplexity:.0f} on {n_test} titles.\n" + "\n".join(lines))
    return ToolResult(text=text, metrics=metrics, images=[("topics.png", figure_png(fig))])


LDA = register(ToolSpec(
    name="bayes.lda",
    course="bayes",
    summary="LDA topic model of StackOverflow question titles (scikit-learn).",
    commands=(
        ToolCommand("train", train_lda, LDAParams,
                    "find topics in StackOverflow titles with LDA"),
    ),
    examples=(
        "find topics in stackoverflow questions",
        "topic model the stackoverflow titles",
        "what topics are in the questions",
        "lda topics please",
        "run lda topic modelling",
        "latent dirichlet allocation on titles",
    ),
    headline_metric="perplexity",
))

SPECS: list[ToolSpec] = [LDA]
