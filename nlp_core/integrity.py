"""Saved models that can be trusted: a ``checksums.json`` manifest beside each model's files.

A model dir is written file by file, then the manifest (sha256 and size of each file) last.
Loading checks the files against it first, so a truncated, overwritten or corrupted file is
reported by name, with the command that rebuilds it, instead of being read (or silently
retrained: minutes of CPU and gigabytes of memory on the chat's path). A dir written before
manifests existed loads unchecked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from indexes.persistence import sha256_file

MANIFEST = "checksums.json"


class DamagedModelError(Exception):
    """A saved model's file is not what was written; the message names it and the remedy."""

    def __init__(self, path: Path, reason: str, remedy: str) -> None:
        self.path = path
        super().__init__(f"{path} is damaged ({reason}). {remedy}")


def write_manifest(directory: Path) -> None:
    """Record the sha256 and size of every file in ``directory`` (atomically, last)."""
    files = {path.name: {"sha256": sha256_file(path), "bytes": path.stat().st_size}
             for path in sorted(directory.iterdir())
             if path.is_file() and path.name != MANIFEST and not path.name.endswith(".tmp")}
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(files, indent=1) + "\n")
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
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            raise DamagedModelError(path, "missing", remedy)
        if path.stat().st_size != expected.get("bytes"):
            raise DamagedModelError(path, f"{path.stat().st_size} bytes, {expected.get('bytes')} "
                                    "were written", remedy)
        if sha256_file(path) != expected.get("sha256"):
            raise DamagedModelError(path, "checksum mismatch", remedy)
