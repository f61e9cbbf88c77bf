"""Logging set-up that never lets a secret (the bot token) through."""

from __future__ import annotations

import logging
import re

_TOKEN_PATTERN = re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{20,}\b")


class RedactingFilter(logging.Filter):
    """Masks bot tokens (and any extra secret strings) in every log record."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.secrets = [s for s in (secrets or []) if s]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "**********")
        return _TOKEN_PATTERN.sub("**********", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def error_line(exc: BaseException) -> str:
    """``Type: first line of the message``, with bot tokens masked: an error as it goes into
    a log line or a database row (a heartbeat, an outbox message's last error)."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__
    return _TOKEN_PATTERN.sub("**********", text)


def setup_logging(level: str = "INFO", secrets: list[str] | None = None) -> None:
    """Log to stderr with secrets redacted; call again to add secrets."""
    from bot.settings import get_settings

    token = get_settings().telegram_token
    all_secrets = list(secrets or [])
    if token is not None:
        all_secrets.append(token.get_secret_value())
    root = logging.getLogger()
    if not any(isinstance(h, logging.StreamHandler) for h in root.handlers):
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(stream)
    for handler in root.handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(RedactingFilter(all_secrets))
    root.setLevel(level.upper())
