"""``amlbot train``: train the NLU models into ``<data_dir>/models`` (the first ``amlbot chat``
trains whatever is missing; this retrains on demand). One command per registered component
(``nlp_core.components``), plus ``nlu`` for everything the bot answers with."""

from __future__ import annotations

import time
from typing import Any

import typer

from bot.cli.generated import command
from nlp_core.components import Component, Request, components

app = typer.Typer(help="Train models into <data_dir>/models.", no_args_is_help=True)


def _progress(fraction: float, detail: str) -> None:
    typer.echo(f"  {100 * fraction:5.1f}%  {detail}", err=True)


def _trainer(component: Component) -> Any:
    def run(*, flags: dict[str, bool]) -> None:
        from bot.app import tool_examples, workspace
        from bot.settings import get_settings

        started = time.perf_counter()
        summary = component.train(workspace(get_settings()), _progress,
                                  Request(flags=flags, tool_examples=tool_examples()))
        typer.echo(f"{summary} ({time.perf_counter() - started:.1f} s)")

    offline = "" if component.answers else "\n\n(Offline: the bot does not use it to answer.)"
    return command(run, component.summary + offline, [], component.train_flags)


for _name, _component in components.items():
    app.command(_name)(_trainer(_component))


@app.command("nlu")
def nlu() -> None:
    """Everything `amlbot chat` needs: intent, tags, entities, thread index, chit-chat.

    Trains only what is missing; delete a model's dir under <data_dir>/models to retrain it.
    """
    from bot.app import load_nlp
    from bot.settings import get_settings

    started = time.perf_counter()
    load_nlp(get_settings())
    typer.echo(f"NLU ready in {time.perf_counter() - started:.1f} s")
