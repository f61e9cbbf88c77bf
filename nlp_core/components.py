"""The NLU components, declared once: name, how each is trained, loaded and evaluated.

``amlbot train NAME`` and ``amlbot eval NAME`` are generated from these declarations (as
``/help`` is from the skills), so a new model is one more :func:`register` call here. A
component that the bot does not use when answering (``answers=False``) lives under
``nlp_core/offline``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nlp_core.workspace import Workspace

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Flag:
    """A yes/no option of a component's training or evaluation (``--baseline/--no-baseline``)."""

    name: str
    default: bool
    help: str


@dataclass(frozen=True)
class Request:
    """What a training or evaluation run is given besides the workspace."""

    flags: Mapping[str, bool] = field(default_factory=dict)
    #: Each course tool's phrasings (the intent model learns them).
    tool_examples: Mapping[str, Sequence[str]] = field(default_factory=dict)
    data: Path | None = None  # evaluation: a file in the component's evaluation format
    model_dir: Path | None = None  # evaluation: a saved model (default: the trained one)
    out_dir: Path | None = None  # evaluation: where the report goes


@dataclass(frozen=True)
class Component:
    """One NLU model. ``train`` returns a one-line summary of what it trained; ``evaluate``
    writes a report into ``request.out_dir`` and returns its metrics."""

    name: str
    summary: str
    train: Callable[[Workspace, Progress, Request], str]
    evaluate: Callable[[Workspace, Request], dict[str, Any]] | None = None
    load: Callable[[Workspace], Any] | None = None
    eval_help: str = ""
    train_flags: tuple[Flag, ...] = ()
    eval_flags: tuple[Flag, ...] = ()
    #: Whether the bot uses the model when it answers (False: trained and measured offline).
    answers: bool = True


components: dict[str, Component] = {}


def register(component: Component) -> Component:
    if component.name in components:
        raise ValueError(f"NLU component {component.name!r} is already registered")
    components[component.name] = component
    return component


# --- the declarations: each function imports its model only when it runs ------------------
def _train_intent(workspace: Workspace, progress: Progress, request: Request) -> str:
    from nlp_core.intent import model_dir, train_intent

    model = train_intent(workspace, progress, tool_examples=request.tool_examples)
    return (f"intent model: {', '.join(map(str, model.classes_))}; validation accuracy "
            f"{model.validation_accuracy_:.4f} -> {model_dir(workspace)}")


def _eval_intent(workspace: Workspace, request: Request) -> dict[str, Any]:
    from nlp_core.evaluation.intent import run

    # The tools' phrasings matter only to train a model or to carve the held-out part.
    tools = request.tool_examples if request.data is None or request.model_dir is None else None
    return run(request.data, request.model_dir, _out(workspace, request), workspace,
               tool_examples=tools)


def _load_intent(workspace: Workspace) -> Any:
    from nlp_core.intent import load_or_train_intent

    return load_or_train_intent(workspace)


def _train_tags(workspace: Workspace, progress: Progress, request: Request) -> str:
    from nlp_core.tags import model_dir, train_tags

    model = train_tags(workspace, progress,
                       use_embeddings=request.flags.get("embeddings", True))
    return (f"tag model: {len(model.classes_)} tags, validation F1 weighted "
            f"{model.validation_f1_weighted_:.4f} -> {model_dir(workspace)}")


def _eval_tags(workspace: Workspace, request: Request) -> dict[str, Any]:
    from nlp_core.evaluation.tags import run

    return run(request.data, request.model_dir, _out(workspace, request), workspace,
               baseline=request.flags.get("baseline", True))


def _load_tags(workspace: Workspace) -> Any:
    from nlp_core.tags import load_or_train_tags

    return load_or_train_tags(workspace, use_embeddings=workspace.tags_use_embeddings)


def _train_chitchat(workspace: Workspace, progress: Progress, request: Request) -> str:
    from nlp_core.chitchat import model_dir, train_chitchat
    from nlp_core.encoder import default_encoder

    model = train_chitchat(workspace, default_encoder(workspace), progress)
    return f"chit-chat index: {len(model.replies_):,} dialogue pairs -> {model_dir(workspace)}"


def _load_chitchat(workspace: Workspace) -> Any:
    from nlp_core.chitchat import load_or_train_chitchat
    from nlp_core.encoder import default_encoder

    return load_or_train_chitchat(workspace, default_encoder(workspace))


def _train_threads(workspace: Workspace, progress: Progress, request: Request) -> str:
    from nlp_core.encoder import default_encoder
    from nlp_core.threads import build_thread_index, index_dir

    index = build_thread_index(workspace, default_encoder(workspace), progress,
                               limit=workspace.thread_index_limit)
    return f"thread index: {len(index):,} titles -> {index_dir(workspace)}"


def _load_threads(workspace: Workspace) -> Any:
    from nlp_core.threads import ThreadSearcher

    return ThreadSearcher.load(workspace)


def _train_duplicates(workspace: Workspace, progress: Progress, request: Request) -> str:
    from nlp_core.offline.duplicates.ranker import model_dir, train_duplicates

    train_duplicates(workspace, progress)
    return f"duplicate ranker -> {model_dir(workspace)}"


def _eval_duplicates(workspace: Workspace, request: Request) -> dict[str, Any]:
    from nlp_core.offline.duplicates.evaluate import run

    return run(request.data, request.model_dir, _out(workspace, request), workspace)


def _train_ner(workspace: Workspace, progress: Progress, request: Request) -> str:
    from nlp_core.offline.twitter_ner.train import model_dir, train_ner

    train_ner(workspace, progress)
    return f"twitter NER -> {model_dir(workspace)}"


def _eval_ner(workspace: Workspace, request: Request) -> dict[str, Any]:
    from nlp_core.offline.twitter_ner.evaluate import run

    return run(request.data, request.model_dir, _out(workspace, request), workspace)


def _out(workspace: Workspace, request: Request) -> Path:
    return request.out_dir or workspace.data_dir / "reports"


register(Component(
    "intent", "Intent model (chit-chat, programming and every registered tool's phrasings).",
    _train_intent, _eval_intent, _load_intent,
    eval_help="Intent and routing accuracy. --data: a TSV with header route<TAB>detail<TAB>"
              "text (route chitchat|programming|tool; detail: the language or tool name, may "
              "be empty). Without --data: the fixed held-out part of the training sources."))
register(Component(
    "tags", "Tag and language model on the fixed train split of so_tags/train.tsv.",
    _train_tags, _eval_tags, _load_tags,
    eval_help="Tag F1 (weighted/macro/micro) and main-language accuracy. --data: a TSV like "
              "so_tags/train.tsv; without it, the fixed test split the default model did not "
              "train on.",
    train_flags=(Flag("embeddings", True, "Add MiniLM sentence embeddings to the features."),),
    eval_flags=(Flag("baseline", True, "Also train and score the course baseline."),)))
register(Component(
    "chitchat", "Chit-chat retrieval index over the dialogue corpora (AMLBOT_CHITCHAT_PAIRS "
    "pairs).", _train_chitchat, load=_load_chitchat))
register(Component(
    "threads", "The StackOverflow thread index every answer searches (rebuilt from the data "
    "dir).", _train_threads, load=_load_threads))
register(Component(
    "duplicates", "Duplicate ranker (MiniLM + adapter, and a re-ranker over MPNet and MiniLM) "
    "on the training part of the AskUbuntu pairs. The first run encodes ~30k titles with MPNet "
    "(~7 min).", _train_duplicates, _eval_duplicates,
    eval_help="Duplicate-question search: Hits@k and MRR on the held-out AskUbuntu pairs, or "
              "on --data (label<TAB>title1<TAB>title2).",
    answers=False))
register(Component(
    "ner", "Twitter NER (frozen MiniLM features + BiLSTM) on twitter_ner/train.txt.",
    _train_ner, _eval_ner,
    eval_help="Entity recognition: conlleval chunk P/R/F1 on twitter_ner/validation.txt, or on "
              "--data (token<SPACE>tag lines).",
    answers=False))
