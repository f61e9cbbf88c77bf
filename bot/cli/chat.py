"""``amlbot chat``: talk to the assistant in the terminal."""

from __future__ import annotations

import sys

import typer


def chat(
    wait: float = typer.Option(
        600.0, help="When input is piped, seconds to wait at EOF for running jobs to finish."
    ),
) -> None:
    """Chat in the console. Pipe lines in (`printf 'hi\\n/help\\n' | amlbot chat`) to script it."""
    from bot.app import build_assistant, startup_over
    from bot.channels.console import ConsoleChannel

    assistant = build_assistant()
    channel = ConsoleChannel(assistant)
    startup_over()
    try:
        if sys.stdin.isatty():
            channel.run_interactive()
        else:
            channel.run_script(sys.stdin, wait=wait)
    finally:
        assistant.close()
