"""``amlbot config``: inspect settings."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="Inspect amlbot's settings (AMLBOT_* variables and .env).",
                  no_args_is_help=True)


@app.command("show")
def show(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Print every setting, with secrets redacted."""
    from bot.settings import get_settings

    values = get_settings().redacted()
    if as_json:
        typer.echo(json.dumps(values, default=str))
        return
    width = max(len(k) for k in values)
    for key, value in values.items():
        typer.echo(f"{key.ljust(width)}  {value}")
