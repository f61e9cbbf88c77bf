"""``amlbot data``: list and fetch the datasets amlbot trains and evaluates on."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Datasets: list them, and fetch them into the data dir.",
                  no_args_is_help=True)


@app.command("list")
def list_datasets() -> None:
    """List registered datasets and whether each file is present and verified."""
    from bot.data.registry import dataset_status

    for line in dataset_status():
        typer.echo(line)


@app.command("fetch")
def fetch(
    mirror: Path | None = typer.Option(
        None, help="A directory laid out like the public mirror (e.g. ../shared/data)."
    ),
    name: list[str] = typer.Option([], "--name", help="Only these datasets (repeatable)."),
) -> None:
    """Copy datasets from a mirror dir (or download them), verifying each file's sha256."""
    from bot.data.fetch import fetch_datasets

    ok = fetch_datasets(mirror=mirror, names=name or None, echo=typer.echo)
    raise typer.Exit(0 if ok else 1)
