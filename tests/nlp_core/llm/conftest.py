"""The packaged Qwen2.5-Coder-0.5B-Instruct, for the slow tests only (SmolLM2-135M-Instruct,
which serves the service mechanics, is in tests/conftest.py: the bot's tests use it too)."""

from __future__ import annotations

import pytest
import torch

from nlp_core.llm.loading import LoadedModel, load_model
from nlp_core.llm.weights import DEFAULT_WEIGHTS, WeightsError, part_paths, resolve_model


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
