"""``amlbot config show`` never prints the bot token or the database password."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bot.cli.main import app
from bot.settings import get_settings

TOKEN = "123456789:AAHsecretsecretsecretsecretsecret_xyz"
PASSWORD = "pa55-w0rd-s3cret"


@pytest.fixture()
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMLBOT_TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("AMLBOT_DATABASE_URL",
                       f"postgresql+psycopg://amlbot:{PASSWORD}@db.example:5432/amlbot")
    get_settings.cache_clear()


@pytest.mark.usefixtures("secrets")
def test_config_show_redacts_token_and_database_password() -> None:
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output and "AAHsecret" not in result.output
    assert PASSWORD not in result.output
    (token_line,) = [line for line in result.output.splitlines()
                     if line.startswith("telegram_token ")]
    assert token_line.split()[-1] == "**********"
    (url_line,) = [line for line in result.output.splitlines()
                   if line.startswith("database_url ")]
    assert url_line.split()[-1] == "postgresql+psycopg://amlbot:***@db.example:5432/amlbot"


@pytest.mark.usefixtures("secrets")
def test_config_show_json_redacts_too() -> None:
    result = CliRunner().invoke(app, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output and PASSWORD not in result.output
    values = json.loads(result.output.strip().splitlines()[-1])
    assert values["telegram_token"] == "**********"
    assert values["database_url"] == "postgresql+psycopg://amlbot:***@db.example:5432/amlbot"


def test_config_show_without_secrets_says_so() -> None:
    result = CliRunner().invoke(app, ["config", "show", "--json"])
    values = json.loads(result.output.strip().splitlines()[-1])
    assert values["telegram_token"] is None
    assert values["database_url"].startswith("sqlite:///")
