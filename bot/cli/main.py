"""Entry point of the ``amlbot`` command."""

from __future__ import annotations

import gc
import logging
import sys

import typer

from bot.cli import bench, chat, config, data, db, health, index, llm, telegram, tool
from bot.cli import eval as eval_cli
from bot.cli import train as train_cli

app = typer.Typer(
    name="amlbot",
    help=(
        "amlbot: a chat assistant for ML practitioners.\n\n"
        "Start with `amlbot chat` (console) or `amlbot telegram` (needs AMLBOT_TELEGRAM_TOKEN). "
        "Settings come from AMLBOT_* environment variables or a .env file; "
        "`amlbot config show` prints them."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("chat")(chat.chat)
app.command("telegram")(telegram.telegram)
app.command("health")(health.health)
app.add_typer(config.app, name="config")
app.add_typer(data.app, name="data")
app.add_typer(db.app, name="db")
app.add_typer(bench.app, name="bench")
app.add_typer(tool.app, name="tool")
app.add_typer(index.app, name="index")
app.add_typer(eval_cli.app, name="eval")
app.add_typer(train_cli.app, name="train")
app.add_typer(llm.app, name="llm")


#: The commands that say when their start-up is over (:func:`bot.app.startup_over`).
_LONG_RUNNING = frozenset({"chat", "telegram"})


@app.callback()
def main(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages to stderr."),
) -> None:
    """amlbot command line."""
    from bot.app import startup_over
    from bot.logging import setup_logging
    from bot.settings import get_settings

    setup_logging("DEBUG" if verbose else get_settings().log_level)
    if ctx.invoked_subcommand not in _LONG_RUNNING:
        startup_over()


def _quiet_third_party() -> None:
    for name in ("httpx", "httpcore", "urllib3", "filelock"):
        logging.getLogger(name).setLevel(logging.WARNING)


_quiet_third_party()


def run() -> None:
    """The ``amlbot`` script: the Typer app, with bad input (an unreadable, malformed or
    missing file, a wrong value) reported in one line and exit status 2 instead of a traceback.
    ``--verbose`` keeps the traceback."""
    gc.disable()  # until the command's start-up is over: see bot.app.startup_over
    from bot.app import StartupError, startup_over

    try:
        app()
    except (ValueError, OSError, StartupError) as error:  # OSError: MissingDataError too
        if "-v" in sys.argv or "--verbose" in sys.argv:
            raise
        if isinstance(error, UnicodeDecodeError):
            message = f"the input is not UTF-8 text ({error.reason} at byte {error.start})"
        else:
            message = str(error) or type(error).__name__
        typer.echo(f"error: {message}", err=True)
        raise SystemExit(2) from None
    finally:
        startup_over()
