"""Fill the data dir from a mirror directory or the public URLs, checking every sha256."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from bot.data.registry import DataFile, datasets, datasets_dir, sha256_of
from bot.settings import Settings


def _install(source: Path, target: Path, item: DataFile) -> str | None:
    """Copy ``source`` to ``target`` atomically if its checksum matches; returns an error."""
    digest = sha256_of(source)
    if digest != item.sha256:
        return (f"checksum mismatch for {item.path}: expected {item.sha256[:12]}…, "
                f"got {digest[:12]}…")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".fetch-")
    os.close(fd)
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return None


def _download(url: str, dest: Path, timeout: float = 60.0) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as response, dest.open("wb") as out:
        shutil.copyfileobj(response, out)


def fetch_datasets(
    mirror: Path | None = None,
    names: Iterable[str] | None = None,
    settings: Settings | None = None,
    echo: Callable[[str], None] = print,
) -> bool:
    """Fetch the named datasets (all by default). Returns False if any file is missing."""
    root = datasets_dir(settings)
    wanted = list(names) if names else datasets.names()
    ok = True
    for name in wanted:
        try:
            dataset = datasets.get(name)
        except KeyError as exc:
            echo(str(exc.args[0]))
            ok = False
            continue
        for item in dataset.files:
            target = root / item.path
            if target.is_file() and target.stat().st_size == item.bytes \
                    and sha256_of(target) == item.sha256:
                echo(f"ok       {item.path} (already verified)")
                continue
            error: str | None
            if mirror is not None and (mirror / item.path).is_file():
                error = _install(mirror / item.path, target, item)
                how = f"from {mirror}"
            elif item.url:
                with tempfile.TemporaryDirectory() as tmp:
                    part = Path(tmp) / "download"
                    try:
                        _download(item.url, part)
                        error = _install(part, target, item)
                    except OSError as exc:
                        error = f"could not download {item.url}: {exc}"
                how = f"from {item.url}"
            else:
                where = f"in {mirror}" if mirror else "(no --mirror given)"
                error = (f"{item.path} is not {where} and has no public URL; "
                         f"pass --mirror pointing at a copy of the data")
                how = ""
            if error and dataset.optional:
                echo(f"skipped  {item.path} (optional, for one tool): {error}; retry with "
                     f"`amlbot data fetch --name {dataset.name}`")
            elif error:
                ok = False
                echo(f"MISSING  {item.path}: {error}")
            else:
                echo(f"fetched  {item.path} {how}")
    return ok
