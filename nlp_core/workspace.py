"""What ``nlp_core`` is handed by the bot: where to read data and keep models, and its options.

Nothing in ``nlp_core`` reads settings or the environment; the bot builds one
:class:`Workspace` from its settings (``bot.app.workspace``) and passes it down.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

EncoderBackend = Literal["torch", "onnx", "onnx-int8"]


class DataFiles(Protocol):
    """The registered data files: the local path of one, or an error saying how to fetch it."""

    def require(self, relpath: str) -> Path: ...


@dataclass(frozen=True)
class Workspace:
    """The data dir (models under ``models/``, indexes under ``indexes/``, caches under
    ``cache/``), the data catalogue, and the options the models are built with."""

    data_dir: Path
    data: DataFiles
    chitchat_backend: Literal["retrieval", "smollm2", "llm"] = "retrieval"
    chitchat_pairs: int = 20_000
    thread_index_limit: int | None = None
    tags_use_embeddings: bool = True
    encoder_backend: EncoderBackend = "onnx"
    intent_threshold: float = 0.55

    def require(self, relpath: str) -> Path:
        """The local path of a registered data file (see :class:`DataFiles`)."""
        return self.data.require(relpath)

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def embeddings_cache(self) -> Path:
        """Where embeddings of corpora are cached, keyed by model and text."""
        return self.data_dir / "cache" / "embeddings"
