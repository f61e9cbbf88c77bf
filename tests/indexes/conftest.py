"""Real MiniLM vectors of real StackOverflow titles, encoded once per test session."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from indexes import ThreadMeta

if TYPE_CHECKING:
    from nlp_core.encoder import Encoder

N_TITLES = 800


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    """The packaged MiniLM encoder, loaded once."""
    from nlp_core.encoder import Encoder

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
