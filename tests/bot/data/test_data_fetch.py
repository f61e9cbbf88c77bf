"""Fetching datasets from a mirror dir: copies verified files, refuses corrupted ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli.main import app
from bot.data import MissingDataError, require
from bot.data.fetch import fetch_datasets
from bot.data.registry import datasets, sha256_of
from bot.settings import Settings

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
# Every test hands fetch a mirror holding each file it asks for, so nothing touches the network.
NER_FILES = ("twitter_ner/train.txt", "twitter_ner/validation.txt")


@pytest.fixture()
def mirror(tmp_path: Path) -> Path:
    """A private copy of the twitter_ner part of the shared mirror, safe to corrupt."""
    if not all((SHARED_DATA / name).is_file() for name in NER_FILES):
        pytest.skip(f"no shared data at {SHARED_DATA}")
    root = tmp_path / "mirror"
    for name in NER_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHARED_DATA / name, root / name)
    return root


def _fetch(mirror: Path, data_dir: Path, *names: str) -> tuple[bool, list[str]]:
    lines: list[str] = []
    ok = fetch_datasets(mirror=mirror, names=list(names), settings=Settings(data_dir=data_dir),
                        echo=lines.append)
    return ok, lines


def test_fetch_copies_from_the_mirror_and_verifies(mirror: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ok, lines = _fetch(mirror, data_dir, "twitter_ner")
    assert ok, lines
    for item in datasets.get("twitter_ner").files:
        local = require(item.path, Settings(data_dir=data_dir))
        assert local == data_dir / "datasets" / item.path
        assert sha256_of(local) == item.sha256 and local.stat().st_size == item.bytes
    assert all(line.startswith("fetched") for line in lines)
    # A second fetch finds everything verified and copies nothing.
    ok, lines = _fetch(mirror, data_dir, "twitter_ner")
    assert ok and all("already verified" in line for line in lines)


def test_a_corrupted_mirror_file_is_refused(mirror: Path, tmp_path: Path) -> None:
    corrupted = mirror / "twitter_ner/train.txt"
    payload = bytearray(corrupted.read_bytes())
    payload[len(payload) // 2] ^= 0x01  # one flipped bit, same size
    corrupted.write_bytes(bytes(payload))
    data_dir = tmp_path / "data"
    ok, lines = _fetch(mirror, data_dir, "twitter_ner")
    assert not ok
    (bad,) = [line for line in lines if "train.txt" in line]
    assert bad.startswith("MISSING") and "checksum mismatch" in bad
    target = data_dir / "datasets/twitter_ner"
    assert not (target / "train.txt").exists()
    assert not list(target.glob(".fetch-*")), "no partial file may be left behind"
    assert (target / "validation.txt").is_file()  # the good file still arrives
    with pytest.raises(MissingDataError):
        require("twitter_ner/train.txt", Settings(data_dir=data_dir))


def test_a_file_missing_from_the_mirror_is_reported(tmp_path: Path) -> None:
    # A mirror with every so_tags file except train.tsv, which has no public URL: the fetch
    # must say so (and never try to download the others, which the mirror holds).
    items = datasets.get("so_tags").files
    if not all((SHARED_DATA / item.path).is_file() for item in items):
        pytest.skip(f"no shared data at {SHARED_DATA}")
    partial = tmp_path / "partial-mirror"
    for item in items:
        if item.path != "so_tags/train.tsv":
            (partial / item.path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SHARED_DATA / item.path, partial / item.path)
    (missing,) = [item for item in items if item.path == "so_tags/train.tsv"]
    assert missing.url is None
    data_dir = tmp_path / "data"
    ok, lines = _fetch(partial, data_dir, "so_tags")
    assert not ok
    (line,) = [line for line in lines if "train.tsv" in line]
    assert line.startswith("MISSING") and str(partial) in line and "no public URL" in line
    with pytest.raises(MissingDataError) as error:
        require("so_tags/train.tsv", Settings(data_dir=data_dir))
    message = str(error.value)
    assert "so_tags/train.tsv" in message and "amlbot data fetch --mirror" in message
    assert require("so_tags/unlabeled.tsv", Settings(data_dir=data_dir)).is_file()


def test_data_list_shows_what_is_present(mirror: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("AMLBOT_DATA_DIR", str(data_dir))
    from bot.settings import get_settings

    get_settings.cache_clear()
    runner = CliRunner()
    before = runner.invoke(app, ["data", "list"])
    assert before.exit_code == 0, before.output
    assert "twitter_ner:" in before.output and "so_tags:" in before.output
    assert all("missing" in line for line in before.output.splitlines() if "/" in line
               and line.startswith("  "))
    assert _fetch(mirror, data_dir, "twitter_ner")[0]
    after = runner.invoke(app, ["data", "list"])
    for name in NER_FILES:
        (line,) = [line for line in after.output.splitlines() if name in line]
        assert line.rstrip().endswith("ok")
    (line,) = [line for line in after.output.splitlines() if "so_tags/train.tsv" in line]
    assert line.rstrip().endswith("missing")
