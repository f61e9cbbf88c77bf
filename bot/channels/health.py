"""Is the bot well? The answer of ``amlbot health`` and of ``/healthz`` in webhook mode.

Everything is read from the database, so a separate process can ask: a round trip to it, the
heartbeats the running bot processes write every few seconds (with their polling state and
their job runner's), and the outbox (how many replies wait, and since when).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.logging import error_line
from bot.settings import Settings
from bot.storage.delivery import Beat, DeliveryStore
from bot.storage.models import utcnow

COMPONENT = "telegram"


@dataclass(frozen=True)
class Limits:
    """When a check fails (seconds)."""

    #: A bot process whose last heartbeat is older counts as gone.
    heartbeat_stale_after: float = 30.0
    #: Polling is unwell when its last successful ``getUpdates`` is older.
    poll_stale_after: float = 40.0
    #: The outbox is unwell when a reply has waited longer.
    outbox_max_age: float = 60.0


def limits(settings: Settings) -> Limits:
    """The limits the settings give."""
    return Limits(heartbeat_stale_after=settings.health_stale_after,
                  poll_stale_after=settings.telegram_poll_timeout + 30.0,
                  outbox_max_age=settings.health_outbox_max_age)


@dataclass(frozen=True)
class Check:
    """One part of the answer."""

    name: str
    ok: bool
    summary: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Health:
    """Every check; healthy when all of them pass."""

    checks: list[Check]

    @property
    def healthy(self) -> bool:
        return all(check.ok for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy,
                "checks": {c.name: {"ok": c.ok, "summary": c.summary, **c.data}
                           for c in self.checks}}

    def lines(self) -> list[str]:
        """One line per check, for people."""
        width = max(len(check.name) for check in self.checks)
        return [f"{check.name:<{width}}  {'ok  ' if check.ok else 'FAIL'}  {check.summary}"
                for check in self.checks]


def _age(then: str | datetime | None, now: datetime) -> float | None:
    if then is None:
        return None
    moment = datetime.fromisoformat(then) if isinstance(then, str) else then
    return max(0.0, (now - moment).total_seconds())


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago"


def check_health(delivery: DeliveryStore, limits: Limits = Limits(),
                 *, now: datetime | None = None) -> Health:
    """Ask the database how the bot is doing."""
    now = now or utcnow()
    try:
        seconds = delivery.store.ping()
        beats = delivery.beats(COMPONENT)
        stats = delivery.outbox_stats()
    except Exception as exc:  # noqa: BLE001 - any failure means: the database is not there
        reason = error_line(exc)
        unknown = "unknown: the database is unreachable"
        return Health([Check("database", False, f"unreachable: {reason}")]
                      + [Check(name, False, unknown) for name in ("bot", "polling", "outbox",
                                                                  "jobs")])
    checks = [Check("database", True, f"round trip {seconds * 1000:.1f} ms",
                    {"round_trip_ms": round(seconds * 1000, 2)})]
    live = [b for b in beats if (_age(b.beat_at, now) or 0.0) <= limits.heartbeat_stale_after]
    checks.append(_bot_check(beats, live, now))
    checks.append(_polling_check(live, limits, now))
    oldest = _age(stats.oldest_pending_at, now)
    outbox_ok = oldest is None or oldest <= limits.outbox_max_age
    summary = (f"{stats.pending} pending" + (f", the oldest for {oldest:.0f} s" if oldest else "")
               + f"; {stats.failed} refused by Telegram")
    checks.append(Check("outbox", outbox_ok, summary,
                        {"pending": stats.pending, "oldest_pending_age_s":
                         None if oldest is None else round(oldest, 1), "failed": stats.failed}))
    checks.append(_jobs_check(live))
    return Health(checks)


def _bot_check(beats: list[Beat], live: list[Beat], now: datetime) -> Check:
    processes = [{"name": b.name, "mode": b.data.get("mode"),
                  "heartbeat_age_s": round(_age(b.beat_at, now) or 0.0, 1)} for b in live]
    if live:
        modes = sorted({str(b.data.get("mode")) for b in live})
        return Check("bot", True, f"{len(live)} process{'es' if len(live) > 1 else ''} running "
                     f"({', '.join(modes)})", {"processes": processes})
    last = _age(beats[0].beat_at, now) if beats else None
    return Check("bot", False, f"no bot process is running (last heartbeat: {_ago(last)})",
                 {"processes": []})


def _polling_check(live: list[Beat], limits: Limits, now: datetime) -> Check:
    polling = [b for b in live if b.data.get("mode") == "polling"]
    if not live:
        return Check("polling", False, "no bot process is running")
    if not polling:
        return Check("polling", True, "webhook mode: Telegram posts the updates")
    worst: Check | None = None
    for beat in polling:
        state = dict(beat.data.get("polling") or {})
        age = _age(state.get("last_ok_at"), now)
        failures = int(state.get("failures") or 0)
        data = {"last_success_age_s": None if age is None else round(age, 1),
                "failures": failures, "error": state.get("error")}
        if failures or age is None or age > limits.poll_stale_after:
            reason = f": {state['error']}" if state.get("error") else ""
            worst = Check("polling", False, f"getUpdates failing {failures} time(s) in a row, "
                          f"last success {_ago(age)}{reason}", data)
        elif worst is None:
            worst = Check("polling", True, f"last getUpdates {_ago(age)}", data)
    assert worst is not None
    return worst


def _jobs_check(live: list[Beat]) -> Check:
    reports = [dict(b.data["jobs"]) for b in live if isinstance(b.data.get("jobs"), dict)]
    if not live:
        return Check("jobs", False, "no bot process is running")
    if not reports:
        return Check("jobs", True, "no job runner reported", {"runners": []})
    bad = [r for r in reports if not r.get("ok", False)]
    active = sum(int(r.get("active") or 0) for r in reports)
    if bad:
        return Check("jobs", False, str(bad[0].get("summary") or "the job runner is down"),
                     {"runners": reports})
    return Check("jobs", True, f"job runner alive, {active} job(s) active", {"runners": reports})
