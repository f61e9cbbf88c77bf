"""Loaders for the corpora the NLU trains on: StackOverflow tagged titles, AskUbuntu title
pairs and dialogue text."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

#: chatterbot-corpus files that talk about computers as a topic, left out of "chit-chat".
CHATTERBOT_EXCLUDED: frozenset[str] = frozenset({"coding", "tech_support"})


_TAG = r"""\s*(?:'([^'\\]*)'|"([^"\\]*)")\s*"""
_TAG_LIST = re.compile(rf"\[(?:{_TAG}(?:,{_TAG})*,?)?\s*\]")


def parse_tag_list(value: str) -> list[str]:
    """Tags from the ``tags`` column of so_tags/*.tsv, a Python list of string literals.

    Parsed with a regular expression, never ``eval`` (``ast.literal_eval`` is not thread-safe on
    some CPython 3.11 releases, and the NLU loads its models in threads).
    """
    text = value.strip()
    if not text:
        return []
    if _TAG_LIST.fullmatch(text) is None:
        raise ValueError(f"not a list of tag strings: {value[:80]!r}")
    return [single or double for single, double in re.findall(_TAG, text[1:-1])]


def load_so_tags(path: Path) -> tuple[list[str], list[list[str]]]:
    """Titles and their tag lists from a TSV laid out like ``so_tags/train.tsv``.

    The header is ``title<TAB>tags`` and ``tags`` holds a list literal (``['php', 'sql']``).
    """
    titles: list[str] = []
    tags: list[list[str]] = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        if reader.fieldnames is None or not {"title", "tags"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected a header with 'title' and 'tags' columns")
        for row in reader:
            titles.append(row["title"] or "")
            tags.append(parse_tag_list(row["tags"] or "[]"))
    return titles, tags


def load_titles(path: Path) -> list[str]:
    """Titles from a one-column TSV with a ``title`` header (``so_tags/unlabeled.tsv``)."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        return [row["title"] or "" for row in reader]


def load_lines(path: Path) -> list[str]:
    """Non-empty lines of a text file (``so_tags/text_prepare_tests.tsv``)."""
    return [line.rstrip("\n") for line in path.open(encoding="utf-8") if line.strip()]


def chitchat_utterances() -> list[str]:
    """Every single utterance of the Chit Chat Challenge dataset (package ``chitchat_dataset``)."""
    import chitchat_dataset

    with open(chitchat_dataset._PATH, encoding="utf-8") as handle:
        conversations = json.load(handle)
    return [
        utterance["text"]
        for conversation in conversations.values()
        for message in conversation["messages"]
        for utterance in message
        if utterance.get("text", "").strip()
    ]


def chatterbot_statements(exclude: Iterable[str] = CHATTERBOT_EXCLUDED) -> list[str]:
    """Statements of chatterbot-corpus's English YAML files, minus the ``exclude`` categories."""
    import chatterbot_corpus
    import yaml

    skip = set(exclude)
    folder = Path(chatterbot_corpus.__file__).parent / "data" / "english"
    statements: list[str] = []
    for path in sorted(folder.glob("*.yml")):
        if path.stem in skip:
            continue
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conversation in document.get("conversations", []):
            statements.extend(str(turn) for turn in conversation if str(turn).strip())
    return statements


def in_heldout(text: str, fraction: float, salt: str = "amlbot") -> bool:
    """Whether ``text`` falls in the fixed held-out part of a corpus.

    The split hashes the text itself, so it never depends on row order and duplicates always land
    on the same side.
    """
    digest = hashlib.md5(f"{salt}:{text}".encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def split_heldout(
    items: Iterable[str], fraction: float, salt: str = "amlbot"
) -> Iterator[tuple[int, bool]]:
    """``(index, is_heldout)`` for each item, by :func:`in_heldout`."""
    for index, item in enumerate(items):
        yield index, in_heldout(item, fraction, salt)


@dataclass(frozen=True)
class TitlePair:
    """Two question titles and whether one is a duplicate of the other."""

    duplicate: bool
    title1: str
    title2: str


def read_pairs(path: Path) -> list[TitlePair]:
    """Pairs from a ``label<TAB>title1<TAB>title2`` file (label ``duplicate|non-duplicate``)."""
    pairs: list[TitlePair] = []
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            for number, row in enumerate(rows, start=1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) < 3:
                    raise ValueError(f"{path}:{number}: expected label, title1, title2")
                label = row[0].strip().lower()
                if label not in {"duplicate", "non-duplicate"}:
                    if number == 1:  # a header line
                        continue
                    raise ValueError(f"{path}:{number}: unknown label {row[0]!r}")
                pairs.append(TitlePair(label == "duplicate", row[1], row[2]))
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not UTF-8 text ({error.reason})") from None
    return pairs
