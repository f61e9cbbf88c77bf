"""The CoNLL reader: ``token<SPACE>tag`` lines, a blank line between sentences."""

from __future__ import annotations

from pathlib import Path


def read_conll(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    """Read ``token<SPACE>tag`` lines with a blank line between sentences."""
    sentences: list[list[str]] = []
    tags: list[list[str]] = []
    words: list[str] = []
    labels: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            if words:
                sentences.append(words)
                tags.append(labels)
                words, labels = [], []
            continue
        token, _, tag = line.rpartition(" ")
        if not token:  # a line with a single field: treat as token with tag O
            token, tag = tag, "O"
        words.append(token)
        labels.append(tag)
    if words:
        sentences.append(words)
        tags.append(labels)
    return sentences, tags
