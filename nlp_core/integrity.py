"""Saved models that can be trusted: a ``checksums.json`` manifest beside each model's files.

A model dir is written file by file, then the manifest (sha256 and size of each file) last.
Loading checks the files against it first, so a truncated, overwritten or corrupted file is
reported by name, with the command that rebuilds it, instead of being read (or silently
retrained: minutes of CPU and gigabytes of memory on the chat's path). A dir written before
manifests existed loads unchecked.

Hashing every model file on every start cost about 0.3 s, so a verified file's size, inode,
mtime and ctime go to a small ``.verified.json`` beside the manifest: a file whose stat is
unchanged since it was last hashed is not hashed again (as git trusts its index). Files
changed in the last few seconds are always hashed, since a write within the file system's
timestamp granularity could leave the stat as it was.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from indexes.persistence import sha256_file

MANIFEST = "checksums.json"
#: Stats of the files last found as the manifest says (see the module docstring).
VERIFIED = ".verified.json"
#: Files modified more recently than this are never trusted by their stat alone.
_RACY_S = 3.0


class DamagedModelError(Exception):
    """A saved model's file is not what was written; the message names it and the remedy."""

    def __init__(self, path: Path, reason: str, remedy: str) -> None:
        self.path = path
        super().__init__(f"{path} is damaged ({reason}). {remedy}")


def write_manifest(directory: Path) -> None:
    """Record the sha256 and size of every file in ``directory`` (atomically, last)."""
    files = {path.name: {"sha256": sha256_file(path), "bytes": path.stat().st_size}
             for path in sorted(directory.iterdir())
             if path.is_file() and path.name not in (MANIFEST, VERIFIED)
             and not path.name.endswith(".tmp")}
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(files, indent=1) + "\n")
    (directory / VERIFIED).unlink(missing_ok=True)
    os.replace(tmp, directory / MANIFEST)


def verify_manifest(directory: Path, remedy: str) -> None:
    """Raise :class:`DamagedModelError` unless every file the manifest lists is as written."""
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return
    try:
        files: dict[str, dict[str, object]] = json.loads(manifest.read_text())
    except (OSError, ValueError) as error:
        raise DamagedModelError(manifest, f"unreadable: {error}", remedy) from None
    verified = read_stat_cache(directory / VERIFIED)
    trusted: dict[str, list[object]] = {}
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            raise DamagedModelError(path, "missing", remedy)
        size = path.stat().st_size
        if size != expected.get("bytes"):
            raise DamagedModelError(path, f"{size} bytes, {expected.get('bytes')} were written",
                                    remedy)
        key = stat_key(path, expected.get("sha256"))
        if verified.get(name) != key and sha256_file(path) != expected.get("sha256"):
            raise DamagedModelError(path, "checksum mismatch", remedy)
        if settled(path):
            trusted[name] = key
    if trusted != verified:
        write_stat_cache(directory / VERIFIED, trusted)


def stat_key(path: Path, *extra: object) -> list[object]:
    """What identifies a file's content without reading it (size, inode, mtime, ctime), plus
    ``extra`` (what was found in it), as a JSON-able list."""
    stat = path.stat()
    return [stat.st_size, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, *extra]


def settled(path: Path) -> bool:
    """Whether ``path`` has been left alone long enough for its stat to identify it."""
    stat = path.stat()
    return time.time() - max(stat.st_mtime, stat.st_ctime) > _RACY_S


def read_stat_cache(path: Path) -> dict[str, list[object]]:
    """The ``{name: stat_key}`` map at ``path``; empty when missing or unreadable."""
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def write_stat_cache(path: Path, cache: dict[str, list[object]]) -> None:
    """Best effort: where it cannot be written (a read-only dir), files are read again. Each
    process writes its own temporary file, so bot processes sharing a data dir never mix."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
