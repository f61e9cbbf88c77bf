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
