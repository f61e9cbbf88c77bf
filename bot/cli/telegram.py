"""``amlbot telegram``: run the bot on Telegram (long polling, or a webhook server)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import typer

if TYPE_CHECKING:
    from bot.core.assistant import Assistant

log = logging.getLogger(__name__)


def telegram(
    webhook_url: str | None = typer.Option(
        None, "--webhook-url",
        help="Public HTTPS URL Telegram should post updates to; runs a webhook server "
             "instead of long polling.",
    ),
    listen: str = typer.Option(
        "127.0.0.1", "--listen", help="Webhook mode: address to listen on (behind a proxy)."
    ),
    port: int = typer.Option(8443, "--port", help="Webhook mode: port to listen on."),
) -> None:
    """Run the bot on Telegram. Needs AMLBOT_TELEGRAM_TOKEN (from @BotFather)."""
    from bot.settings import get_settings

    settings = get_settings()
    token = settings.telegram_token
    if token is None or not token.get_secret_value().strip():
        typer.echo(
            "AMLBOT_TELEGRAM_TOKEN is not set. Get a token from @BotFather and put it in the "
            "environment or in .env (AMLBOT_TELEGRAM_TOKEN=123456:ABC...).",
            err=True,
        )
        raise typer.Exit(2)

    from telegram.error import InvalidToken

    from bot.app import build_assistant, startup_over
    from bot.channels.telegram import FatalTelegramError, TelegramChannel
    from bot.logging import setup_logging

    # The token also travels percent-encoded (file download URLs): mask that form too.
    secrets = [quote(token.get_secret_value(), safe="")]
    if settings.telegram_webhook_secret is not None:
        secrets.append(settings.telegram_webhook_secret.get_secret_value())
    root_level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    setup_logging(root_level, secrets=secrets)
    logging.captureWarnings(True)  # PTB warnings go through the redacting log handlers
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        # -v shows every Bot API request; the log filter masks the token in the URLs.
        logging.getLogger("httpx").setLevel(logging.INFO)

    assistant = build_assistant(settings)
    channel = TelegramChannel(assistant, settings, job_probe=job_probe(assistant))
    startup_over()
    try:
        if webhook_url:
            log.info("starting the webhook server on %s:%d for %s", listen, port, webhook_url)
            channel.run_webhook(webhook_url, listen=listen, port=port)
        else:
            log.info("long polling %s", settings.telegram_base_url)
            channel.run_polling()
    except (FatalTelegramError, InvalidToken) as exc:
        log.error("stopping: %s", exc)
        raise typer.Exit(1) from None
    except Exception:
        log.exception("the Telegram channel stopped with an error")
        raise typer.Exit(1) from None
    finally:
        assistant.close()


def job_probe(assistant: Assistant) -> Callable[[], dict[str, Any]] | None:
    """How the job runner (the :class:`JobManager`'s pump) is doing, for the heartbeat."""
    from bot.jobs.manager import JobManager

    managers = [getattr(hook, "__self__", None) for hook in assistant.on_close]
    jobs = next((m for m in managers if isinstance(m, JobManager)), None)
    if jobs is None:
        return None

    def probe() -> dict[str, Any]:
        liveness = getattr(jobs, "liveness", None)
        if callable(liveness):  # the manager's own report, where it has one
            return dict(liveness())
        # Until then: the pump thread starts with the first job and must live while any runs.
        pump = getattr(jobs, "_thread", None)
        alive = pump is not None and pump.is_alive()
        active = len(jobs.active())
        ok = alive or not active
        state = "running" if alive else ("idle" if not active else "stopped")
        summary = (f"job runner {state}, {active} job(s) active" if ok
                   else f"the job runner stopped with {active} job(s) active")
        return {"ok": ok, "state": state, "active": active, "summary": summary}

    return probe
