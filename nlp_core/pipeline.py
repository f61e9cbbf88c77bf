"""The NLP bundle the assistant loads at start: NLU (intent, language and tags, entities, slots),
thread search and chit-chat. Missing models are trained on first use and cached in the data dir.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nlp_core.nlu import Entity, Understanding
from nlp_core.workspace import Workspace

if TYPE_CHECKING:
    from indexes import Hit
    from nlp_core.chitchat import ChitChatResponder
    from nlp_core.chitchat_llm import SmolLM2ChitChat
    from nlp_core.encoder import Encoder
    from nlp_core.intent import IntentClassifier
    from nlp_core.ner.programming import ProgrammingEntities
    from nlp_core.tags import TagClassifier
    from nlp_core.threads import ThreadSearcher
    from nlp_core.tool_match import ToolMatcher

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]


class NLP:
    """Everything the NLP skills need: ``understand``, ``search_threads`` and ``chitchat``.

    The question's embedding is computed once and shared by the tag model and the search.
    All methods are thread-safe.
    """

    def __init__(
        self,
        *,
        encoder: Encoder,
        intent: IntentClassifier,
        tags: TagClassifier,
        entities: ProgrammingEntities,
        searcher: ThreadSearcher,
        chitchat: ChitChatResponder,
        chitchat_generator: SmolLM2ChitChat | None = None,
        tools: ToolMatcher | None = None,
    ) -> None:
        self.encoder = encoder
        self.intent = intent
        self.tags = tags
        self.entities = entities
        self.searcher = searcher
        self.chitchat_model = chitchat
        self.chitchat_generator = chitchat_generator
        self.tools = tools
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        # Serving is one question at a time per chat: parallel chats give the parallelism, and a
        # second OpenMP thread per search only waits for a busy core.
        import faiss

        faiss.omp_set_num_threads(1)

    def embed(self, text: str) -> np.ndarray:
        """The (1, dim) embedding of ``text``, remembered for the next few calls."""
        with self._lock:
            cached = self._vectors.get(text)
            if cached is not None:
                self._vectors.move_to_end(text)
                return cached
        vector = self.encoder.encode([text])
        with self._lock:
            self._vectors[text] = vector
            while len(self._vectors) > 256:
                self._vectors.popitem(last=False)
        return vector

    def understand(self, text: str) -> Understanding:
        """Intent with alternatives; for programming, language, tags and entities; for tools,
        slots; for anything else, a tool the text is close to, if any."""
        from nlp_core.ner.slots import extract_slots

        ranked = self.intent.rank(text, top=3)
        intent, confidence = ranked[0]
        language: str | None = None
        language_confidence = 0.0
        tags: tuple[str, ...] = ()
        entities: tuple[Entity, ...] = ()
        slots: dict[str, Any] = {}
        if intent == "programming":
            embeddings = self.embed(text) if self.tags.use_embeddings else None
            tag_lists, languages, confidences = self.tags.predict_all([text], embeddings)
            language, tags = languages[0], tuple(tag_lists[0])
            language_confidence = float(confidences[0])
            entities = tuple(self.entities.extract(text))
        suggested_tool = None
        if intent.startswith("tool:"):
            slots = extract_slots(text)
        elif self.tools is not None:
            match = self.tools.match(self.embed(text))
            suggested_tool = match[0] if match else None
        return Understanding(intent=intent, confidence=confidence, alternatives=tuple(ranked),
                             language=language, language_confidence=language_confidence,
                             tags=tags, entities=entities, slots=slots,
                             suggested_tool=suggested_tool)

    def search_threads(self, text: str, language: str | None, k: int = 3) -> list[Hit]:
        """The ``k`` most similar threads, within ``language`` first."""
        return self.searcher.search(text, language, k=k, vector=self.embed(text))

    def chitchat(self, text: str, avoid: Iterable[str] = (),
                 history: Sequence[tuple[str, str]] = ()) -> str:
        """A conversational reply that is not one of ``avoid``.

        ``history``, earlier (message, reply) turns of small talk, oldest first, is read by the
        generative backend only: retrieval answers the message alone.
        """
        if self.chitchat_generator is not None:
            return self.chitchat_generator.respond(text, avoid=avoid, history=history)
        return self.chitchat_model.respond(text, avoid=avoid, vector=self.embed(text))


class _Bar:
    """One tqdm bar per training step on stderr (the console shows it; logs get a line)."""

    def __init__(self, title: str) -> None:
        from tqdm import tqdm

        self.title = title
        self.bar = tqdm(total=100, desc=title, file=sys.stderr, leave=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def __call__(self, fraction: float, detail: str = "") -> None:
        self.bar.n = round(100 * max(0.0, min(1.0, fraction)))
        self.bar.set_postfix_str(detail[:60], refresh=True)

    def close(self) -> None:
        self.bar.n = 100
        self.bar.refresh()
        self.bar.close()


def _silent(_fraction: float, _detail: str = "") -> None:
    """A progress callback that shows nothing."""


def _step(title: str, build: Callable[[Progress], Any], quiet: bool) -> Any:
    started = time.perf_counter()
    if quiet:
        result = build(_silent)
    else:
        bar = _Bar(title)
        try:
            result = build(bar)
        finally:
            bar.close()
    log.info("%s ready in %.1f s", title, time.perf_counter() - started)
    return result


def load_or_build_entities(workspace: Workspace) -> ProgrammingEntities:
    """The programming-entity ruler, from a vocabulary cached in the data dir (built from the
    so_tags titles and tags the first time)."""
    import json

    from nlp_core.ner.programming import ProgrammingEntities, build_vocabulary

    path = workspace.data_dir / "models" / "entities" / "vocabulary.json"
    try:
        vocabulary = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        vocabulary = build_vocabulary(workspace.require("so_tags/train.tsv"))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(vocabulary), encoding="utf-8")
        tmp.replace(path)
    return ProgrammingEntities().fit_vocabulary(vocabulary)


_TRAINING_FILES = ("so_tags/train.tsv", "so_tags/unlabeled.tsv", "so_posts/staqc_sql_titles.tsv",
                   "so_posts/so_sample_posts.jsonl", "askubuntu_dups/train_titles.tsv")
_MODEL_DIRS = ("models/intent", "models/tags", "models/entities", "indexes/threads",
               "models/chitchat")


def _require_training_data(workspace: Workspace) -> None:
    """Fail fast, before any work, when a model is missing and so is the data to train it."""
    if all((workspace.data_dir / d).is_dir() for d in _MODEL_DIRS):
        return
    for relpath in _TRAINING_FILES:
        workspace.require(relpath)


def load_nlp(workspace: Workspace, *, tool_examples: Mapping[str, Sequence[str]] | None = None,
             quiet: bool = False) -> NLP:
    """Load every NLP model, training (with a progress bar on stderr) whatever is missing.

    ``tool_examples``: each course tool's phrasings (the intent model learns them as
    ``tool:<name>`` intents). Once everything is trained, the loads run side by side: most of
    their time is imports.
    """
    from concurrent.futures import ThreadPoolExecutor

    from nlp_core.chitchat import load_or_train_chitchat
    from nlp_core.encoder import default_encoder
    from nlp_core.intent import load_or_train_intent
    from nlp_core.ner.programming import import_spacy
    from nlp_core.tags import load_or_train_tags
    from nlp_core.threads import ThreadSearcher
    from nlp_core.tool_match import ToolMatcher

    _require_training_data(workspace)
    if workspace.chitchat_backend == "smollm2":
        from nlp_core.chitchat_llm import check_installed

        check_installed()  # before minutes of training, not after
    # spaCy first, alone: it is imported with torch hidden (see import_spacy), which must not
    # race with another thread's imports.
    import_spacy()
    encoder = default_encoder(workspace)
    examples = {name: list(texts) for name, texts in (tool_examples or {}).items()}
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="nlp-load") as pool:
        # Loading the encoder and the spaCy ruler overlaps the training or loading below.
        warm = pool.submit(encoder.encode, ["warm up"])
        entities = pool.submit(load_or_build_entities, workspace)
        intent = _step("intent model",
                       lambda p: load_or_train_intent(workspace, p, tool_examples=examples),
                       quiet)
        tags = _step("tag model", lambda p: load_or_train_tags(
            workspace, p, use_embeddings=workspace.tags_use_embeddings), quiet)
        warm.result()
        searcher = _step("thread index", lambda p: ThreadSearcher.load(workspace, encoder, p),
                         quiet)
        chitchat = _step("chit-chat index",
                         lambda p: load_or_train_chitchat(workspace, encoder, p), quiet)
        loaded_entities = entities.result()
    tools = ToolMatcher().fit(examples, lambda texts: encoder.encode_cached(
        texts, workspace.embeddings_cache))
    generator = None
    if workspace.chitchat_backend == "smollm2":
        # Imported here and loaded after the pool's work: the default (retrieval) start must
        # not pay for torch and transformers.
        from nlp_core.chitchat_llm import SmolLM2ChitChat

        generator = _step("chit-chat model (SmolLM2)",
                          lambda p: SmolLM2ChitChat(chitchat).load(p), quiet)
    return NLP(encoder=encoder, intent=intent, tags=tags, entities=loaded_entities,
               searcher=searcher, chitchat=chitchat, chitchat_generator=generator, tools=tools)
