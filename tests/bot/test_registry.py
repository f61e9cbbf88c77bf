"""Snapshots of what is registered: a new skill or dataset must be added here on purpose."""

from __future__ import annotations

import pytest

from bot.data import datasets
from bot.registry import Registry
from bot.skills import _register_builtins, skills


def test_registered_skills() -> None:
    _register_builtins()
    assert skills.names() == [
        "chat.chitchat", "core.about", "core.clarify", "core.fallback", "core.help",
        "core.history", "core.privacy", "core.start", "core.unknown_command", "qa.explain",
        "qa.stackoverflow",
        "tools.jobs",
    ]


def test_registered_datasets_match_the_manifest() -> None:
    assert datasets.names() == ["askubuntu_dups", "emoji", "so_posts", "so_tags",
                                "twitter_ner"]
    files = [f.path for _, d in datasets.items() for f in d.files]
    assert len(files) == len(set(files)) == 10


def test_a_name_cannot_be_registered_twice() -> None:
    registry: Registry[int] = Registry("thing")
    registry.register("a")(1)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(2)
    with pytest.raises(KeyError, match="known: a"):
        registry.get("b")
