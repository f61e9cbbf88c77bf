"""Importers for the question and dialogue formats users already have.

* the StackExchange data dump's ``Posts.xml`` (streamed, so a 20M-post file never sits in memory);
* the NLP course's ``tagged_posts.tsv`` (``post_id, title, tag``);
* the NLP course's ``dialogues.tsv`` (``text, tag``).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_ANGLE_TAGS = re.compile(r"<([^<>]+)>")


@dataclass(frozen=True)
class Post:
    """A question: its id, title, tags and (when the source has it) body."""

    id: int
    title: str
    tags: tuple[str, ...] = ()
    body: str | None = None


@dataclass(frozen=True)
class Dialogue:
    """One line of the course's dialogues.tsv: a text and its tag (``dialogue``...)."""

    text: str
    tag: str
    extra: dict[str, str] = field(default_factory=dict)


def parse_dump_tags(value: str | None) -> tuple[str, ...]:
    """Tags of a dump post: ``<python><pandas>`` (older dumps) or ``|python|pandas|`` (newer)."""
    if not value:
        return ()
    if "<" in value:
        return tuple(tag.strip() for tag in _ANGLE_TAGS.findall(value) if tag.strip())
    return tuple(tag.strip() for tag in value.split("|") if tag.strip())


def iter_posts_xml(path: Path, *, with_body: bool = False) -> Iterator[Post]:
    """Questions (``PostTypeId="1"``) of a StackExchange ``Posts.xml``, streamed.

    Each ``<row>`` is cleared once read and the root drops its finished children, so memory stays
    flat however big the dump is.
    """
    from xml.etree.ElementTree import iterparse

    context = iterparse(str(path), events=("start", "end"))
    _, root = next(context)
    for event, element in context:
        if event != "end" or element.tag != "row":
            continue
        attrs = element.attrib
        if attrs.get("PostTypeId") == "1" and attrs.get("Id", "").isdigit():
            yield Post(
                id=int(attrs["Id"]),
                title=attrs.get("Title", ""),
                tags=parse_dump_tags(attrs.get("Tags")),
                body=attrs.get("Body") if with_body else None,
            )
        element.clear()
        root.clear()


def _rows(path: Path) -> Iterator[dict[str, str]]:
    csv.field_size_limit(2**31 - 1)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        if reader.fieldnames is None:
            return
        yield from reader


def iter_tagged_posts(path: Path) -> Iterator[Post]:
    """Posts of the course's ``tagged_posts.tsv`` (header ``post_id, title, tag``; one tag)."""
    for row in _rows(path):
        missing = {"post_id", "title", "tag"} - set(row)
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        post_id = (row["post_id"] or "").strip()
        if not post_id.isdigit():
            continue
        tag = (row["tag"] or "").strip()
        yield Post(id=int(post_id), title=row["title"] or "", tags=(tag,) if tag else ())


def iter_dialogues(path: Path) -> Iterator[Dialogue]:
    """Lines of the course's ``dialogues.tsv`` (header ``text, tag``)."""
    for row in _rows(path):
        if "text" not in row or "tag" not in row:
            raise ValueError(f"{path}: expected 'text' and 'tag' columns")
        text = (row["text"] or "").strip()
        if text:
            extra = {k: v for k, v in row.items() if k not in ("text", "tag") and k is not None}
            yield Dialogue(text=text, tag=(row["tag"] or "").strip(), extra=extra)
