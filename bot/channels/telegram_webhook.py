"""Webhook mode: a small Tornado server that commits each posted update before answering 200
(503 when it could not: Telegram then posts it again), and serves ``/healthz``.

Several bot processes may serve one webhook URL behind a load balancer, sharing the database:
an update stored by one is ignored by the others, so each is answered exactly once.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import tornado.web
from telegram import Bot
from telegram.error import InvalidToken, NetworkError, RetryAfter
from tornado.httpserver import HTTPServer

from bot.channels.health import Health
from bot.channels.telegram_sender import Backoff, FatalTelegramError, retry_after_seconds

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_BODY = 1 << 20  # an update is a few kB; Telegram's own limit for a message is far below


@dataclass(frozen=True)
class Webhook:
    """What the server needs from the channel."""

    bot: Bot
    secret: str
    #: Stores one update; False when it could not (answer 503: Telegram posts it again).
    receive: Callable[[dict[str, Any]], Awaitable[bool]]
    #: The health report (blocking: it reads the database).
    health: Callable[[], Health]
    allowed_updates: list[str]
    max_delay: float


class _UpdateHandler(tornado.web.RequestHandler):
    """``POST <path>``: one update from Telegram."""

    def initialize(self, hook: Webhook) -> None:
        self.hook = hook

    async def post(self) -> None:
        given = self.request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.hook.secret.encode()):
            self.set_status(403)
            return
        try:
            payload = json.loads(self.request.body or b"{}")
            if not isinstance(payload, dict) or not isinstance(payload.get("update_id"), int):
                raise ValueError("no update_id")
        except ValueError:
            self.set_status(400)
            return
        stored = await self.hook.receive(payload)
        self.set_status(200 if stored else 503)


class _HealthHandler(tornado.web.RequestHandler):
    """``GET /healthz``: the health report; 200 when healthy, else 503."""

    def initialize(self, hook: Webhook) -> None:
        self.hook = hook

    async def get(self) -> None:
        loop = asyncio.get_running_loop()
        report = await loop.run_in_executor(None, self.hook.health)
        self.set_status(200 if report.healthy else 503)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(report.to_dict()))


async def serve_webhook(hook: Webhook, webhook_url: str, *, listen: str, port: int) -> None:
    """Serve until cancelled; register ``webhook_url`` with the Bot API once listening."""
    path = urlparse(webhook_url).path or "/"
    handlers: list[Any] = [(r"/healthz", _HealthHandler, {"hook": hook})]
    if path != "/healthz":
        handlers.insert(0, (re.escape(path), _UpdateHandler, {"hook": hook}))
    server = HTTPServer(tornado.web.Application(handlers), xheaders=True,
                        max_body_size=MAX_BODY)
    server.listen(port, address=listen)
    log.info("webhook server listening on %s:%d (updates at %s, health at /healthz)", listen,
             port, path)
    try:
        await _register(hook, webhook_url)
        await asyncio.Event().wait()
    finally:
        server.stop()


async def _register(hook: Webhook, webhook_url: str) -> None:
    """``setWebhook`` until the Bot API takes it; a refused token is fatal."""
    backoff = Backoff(cap=hook.max_delay)
    while True:
        try:
            await hook.bot.set_webhook(webhook_url, secret_token=hook.secret,
                                       allowed_updates=hook.allowed_updates)
            return
        except InvalidToken as exc:
            raise FatalTelegramError(f"setWebhook was refused ({exc.message}): the token is "
                                     "wrong or revoked") from None
        except RetryAfter as exc:
            await asyncio.sleep(retry_after_seconds(exc))
        except NetworkError as exc:
            backoff.failed()
            log.warning("setWebhook failed (%s); trying again in %.1f s", exc,
                        backoff.remaining())
            await backoff.wait()
