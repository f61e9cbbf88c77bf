"""``amlbot train``: train the NLU models into ``<data_dir>/models`` (the first ``amlbot chat``
trains whatever is missing; this retrains on demand)."""

from __future__ import annotations

import time

import typer

app = typer.Typer(help="Train models into <data_dir>/models.", no_args_is_help=True)


def _progress(fraction: float, detail: str) -> None:
    typer.echo(f"  {100 * fraction:5.1f}%  {detail}", err=True)


@app.command("tags")
def tags(
    embeddings: bool = typer.Option(True, "--embeddings/--no-embeddings",
                                    help="Add MiniLM sentence embeddings to the features."),
) -> None:
    """Tag and language model on the fixed train split of so_tags/train.tsv."""
    from bot.settings import get_settings
    from nlp_core.tags import model_dir, train_tags

    settings = get_settings()
    started = time.perf_counter()
    model = train_tags(settings, _progress, use_embeddings=embeddings)
    typer.echo(f"tag model: {len(model.classes_)} tags, validation F1 weighted "
               f"{model.validation_f1_weighted_:.4f}, {time.perf_counter() - started:.1f} s "
               f"-> {model_dir(settings)}")


@app.command("intent")
def intent() -> None:
    """Intent model (chit-chat, programming and every registered tool's phrasings)."""
    from bot.cli.eval import registry_tool_examples
    from bot.settings import get_settings
    from nlp_core.intent import model_dir, train_intent

    settings = get_settings()
    started = time.perf_counter()
    model = train_intent(settings, _progress, tool_examples=registry_tool_examples())
    typer.echo(f"intent model: {', '.join(map(str, model.classes_))}; validation accuracy "
               f"{model.validation_accuracy_:.4f}, {time.perf_counter() - started:.1f} s "
               f"-> {model_dir(settings)}")


@app.command("chitchat")
def chitchat() -> None:
    """Chit-chat retrieval index over the dialogue corpora (AMLBOT_CHITCHAT_PAIRS pairs)."""
    from bot.settings import get_settings
    from nlp_core.chitchat import model_dir, train_chitchat
    from nlp_core.encoder import encoder_from_settings

    settings = get_settings()
    started = time.perf_counter()
    model = train_chitchat(settings, encoder_from_settings(settings), _progress)
    typer.echo(f"chit-chat index: {len(model.replies_):,} dialogue pairs, "
               f"{time.perf_counter() - started:.1f} s -> {model_dir(settings)}")


@app.command("threads")
def threads() -> None:
    """The StackOverflow thread index every answer searches (rebuilt from the data dir)."""
    from bot.settings import get_settings
    from nlp_core.encoder import encoder_from_settings
    from nlp_core.threads import build_thread_index, index_dir

    settings = get_settings()
    started = time.perf_counter()
    index = build_thread_index(settings, encoder_from_settings(settings), _progress,
                               limit=settings.thread_index_limit)
    typer.echo(f"thread index: {len(index):,} titles, {time.perf_counter() - started:.1f} s "
               f"-> {index_dir(settings)}")


@app.command("duplicates")
def duplicates() -> None:
    """Duplicate ranker (MiniLM + adapter, and a re-ranker over MPNet and MiniLM) on the training
    part of the AskUbuntu pairs. The first run encodes ~30k titles with MPNet (~7 min)."""
    from bot.settings import get_settings
    from nlp_core.duplicates import model_dir, train_duplicates

    settings = get_settings()
    started = time.perf_counter()
    train_duplicates(settings, _progress)
    typer.echo(f"duplicate ranker: {time.perf_counter() - started:.1f} s -> "
               f"{model_dir(settings)}")


@app.command("ner")
def ner() -> None:
    """Twitter NER (frozen MiniLM features + BiLSTM) on twitter_ner/train.txt."""
    from bot.settings import get_settings
    from nlp_core.ner.twitter import model_dir, train_ner

    settings = get_settings()
    started = time.perf_counter()
    train_ner(settings, _progress)
    typer.echo(f"twitter NER: {time.perf_counter() - started:.1f} s -> {model_dir(settings)}")


@app.command("nlu")
def nlu() -> None:
    """Everything `amlbot chat` needs: intent, tags, entities, thread index, chit-chat.

    Trains only what is missing; delete a model's dir under <data_dir>/models to retrain it.
    """
    from bot.settings import get_settings
    from nlp_core.pipeline import load_nlp

    started = time.perf_counter()
    load_nlp(get_settings())
    typer.echo(f"NLU ready in {time.perf_counter() - started:.1f} s")
