"""How a thread index lies on disk, and how it is checked before it is trusted.

A saved index is a directory of ``index.faiss`` (the vectors), ``meta.sqlite3`` (the metadata)
and ``info.json``, written last, with the sha256 and size of the other two: a directory with an
``info.json`` holds a complete index, and a truncated, overwritten or corrupted file is refused
with a message that names it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from indexes.errors import DamagedIndexError, ThreadIndexError

#: Version of the on-disk layout; bumped when files or tables change (3: the ``tombstones``
#: table, which an older reader would ignore and then fail on hits without metadata).
FORMAT_VERSION = 3
#: Layouts this version opens: format 2 is format 3 without tombstones.
READABLE_FORMATS = (2, 3)
INDEX_FILE = "index.faiss"
META_FILE = "meta.sqlite3"
INFO_FILE = "info.json"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 << 20):
            digest.update(block)
    return digest.hexdigest()


def save_files(directory: Path, write_index: Callable[[Path], None],
               write_meta: Callable[[Path], None], info: dict[str, Any]) -> None:
    """Write the two data files atomically, then ``info.json`` with their checksums."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / INFO_FILE).unlink(missing_ok=True)
    for name, write in ((INDEX_FILE, write_index), (META_FILE, write_meta)):
        tmp = directory / (name + ".tmp")
        tmp.unlink(missing_ok=True)
        write(tmp)
        os.replace(tmp, directory / name)
    info = {**info, "format_version": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    info["files"] = {name: {"sha256": sha256_file(directory / name),
                            "bytes": (directory / name).stat().st_size}
                     for name in (INDEX_FILE, META_FILE)}
    tmp_info = directory / (INFO_FILE + ".tmp")
    tmp_info.write_text(json.dumps(info, indent=2))
    os.replace(tmp_info, directory / INFO_FILE)


def read_info(directory: Path) -> dict[str, Any]:
    """The ``info.json`` of a saved index, or a :class:`ThreadIndexError`."""
    info_path = Path(directory) / INFO_FILE
    if not info_path.is_file():
        raise ThreadIndexError(f"no thread index in {directory} (no {INFO_FILE})")
    try:
        info: dict[str, Any] = json.loads(info_path.read_text())
    except (OSError, ValueError) as error:
        raise DamagedIndexError(f"{info_path} is not valid JSON: {error}") from error
    return info


def checked_info(directory: Path, model_name: str | None, model_version: str | None,
                 verify: bool) -> tuple[Path, dict[str, Any]]:
    """The directory of a saved index (the live version when ``directory`` is an index store's
    root) and its ``info.json``, once its format, model and files are checked: ``model_name``
    and ``model_version`` (if given) must match those it was built with, and (with ``verify``)
    its files their sha256."""
    directory = Path(directory)
    pointer = directory / "CURRENT"
    if not (directory / INFO_FILE).is_file() and pointer.is_file():
        directory = directory / "versions" / pointer.read_text().strip()
    info = read_info(directory)
    if info.get("format_version") not in READABLE_FORMATS:
        raise ThreadIndexError(
            f"index in {directory} has format {info.get('format_version')!r}; this amlbot "
            f"reads formats {', '.join(map(str, READABLE_FORMATS))}: rebuild it with "
            f"`amlbot index build`"
        )
    if model_name is not None and info["model_name"] != model_name:
        raise ThreadIndexError(
            f"index in {directory} was built with {info['model_name']!r}, not {model_name!r}"
        )
    if model_version is not None and info.get("model_version", "") != model_version:
        raise ThreadIndexError(
            f"index in {directory} was built with {info['model_name']!r} version "
            f"{info.get('model_version')!r}, not {model_version!r}"
        )
    for name in (INDEX_FILE, META_FILE):
        path = directory / name
        expected = info.get("files", {}).get(name, {})
        if not path.is_file():
            raise DamagedIndexError(f"{path} is missing")
        if path.stat().st_size != expected.get("bytes"):
            raise DamagedIndexError(
                f"{path} has {path.stat().st_size} bytes, info.json says "
                f"{expected.get('bytes')}: the index is truncated or was overwritten"
            )
        if verify and sha256_file(path) != expected.get("sha256"):
            raise DamagedIndexError(f"{path} does not match its sha256 in info.json: corrupt")
    return directory, info
