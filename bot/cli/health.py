"""``amlbot health``: is the running bot well? (Exit status 0 when healthy, 1 when not.)"""

from __future__ import annotations

import json

import typer


def health(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Check the database (a round trip), the running bot (its heartbeat: polling, the job
    runner) and the outbox (replies waiting, the oldest one's age). Exit 0 when all is well,
    1 when not; the checks are read from the database, so run it anywhere that reaches it."""
    from bot.channels.health import check_health, limits
    from bot.settings import get_settings
    from bot.storage.delivery import DeliveryStore
    from bot.storage.store import Store

    settings = get_settings()
    store = Store(settings.resolved_database_url, create=False)
    try:
        report = check_health(DeliveryStore(store, owner="amlbot-health"), limits(settings))
    finally:
        store.dispose()
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.lines():
            typer.echo(line)
        typer.echo("healthy" if report.healthy else "NOT healthy")
    raise typer.Exit(0 if report.healthy else 1)
