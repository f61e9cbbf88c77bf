"""``amlbot tool``: list the course tools, or run one synchronously in this process."""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any

import typer

app = typer.Typer(help="Course tools: list them, or run one here with a progress bar.",
                  no_args_is_help=True)


@app.command("list")
def list_tools() -> None:
    """Every registered tool with its commands and parameters (from their declarations)."""
    from course_tools import load_errors, load_tools
    from course_tools.params import describe_params

    registry = load_tools()
    for name, spec in registry.items():
        typer.echo(f"{name}  [{spec.course}]  {spec.summary}")
        for command in spec.commands:
            heavy = " (heavy)" if command.heavy else ""
            typer.echo(f"  {command.name}{heavy}: {command.help}")
            for line in describe_params(command.params):
                typer.echo(f"      {line}")
        if spec.headline_metric:
            typer.echo(f"  headline metric: {spec.headline_metric}")
    for module, error in load_errors.items():
        typer.echo(f"(tools in {module} are unavailable: {error})", err=True)
    if not len(registry):
        typer.echo("No course tools are installed.")


@app.command("run")
def run(
    name: str = typer.Argument(..., help="Tool name, e.g. demo.montecarlo_pi."),
    command: str = typer.Argument("", help="Command (default: run, else train, else the first)."),
    param: list[str] = typer.Option([], "--param", "-p", help="A parameter as name=value."),
    as_json: bool = typer.Option(
        False, "--json", help="End with one JSON line of the metrics (plus 'headline')."
    ),
) -> None:
    """Run a tool's command here, save its artifacts as a job, and print its metrics."""
    from bot.jobs.manager import new_job_id
    from bot.jobs.records import JobRecords, owner_id
    from bot.jobs.worker import JobEvent, JobSpec, execute
    from bot.settings import get_settings
    from bot.storage.store import Store
    from course_tools import load_tools
    from course_tools.params import ParamError, build_params, split_assignments

    registry = load_tools()
    if name not in registry:
        typer.echo(f"There is no tool {name!r}. Known: {', '.join(registry.names())}", err=True)
        raise typer.Exit(2)
    spec = registry.get(name)
    known = [c.name for c in spec.commands]
    chosen = command or next((c for c in ("run", "train") if c in known), known[0])
    if chosen not in known:
        typer.echo(f"{name} has no command {chosen!r}; it has: {', '.join(known)}", err=True)
        raise typer.Exit(2)
    declared = spec.command(chosen)
    try:
        params = build_params(declared.params, split_assignments(param), where=f"{name} {chosen}")
    except ParamError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2) from None

    settings = get_settings()
    store = Store(settings.resolved_database_url)
    records = JobRecords(store, settings.data_dir.resolve() / "jobs")
    job_id = new_job_id()
    job = JobSpec(job_id=job_id, tool=name, command=chosen,
                  params=params.model_dump(mode="json"), work_dir=str(records.work_dir(job_id)),
                  data_dir=str(settings.data_dir.resolve()))
    records.create(job_id, name, chosen, job.params, None, "cli", f"{owner_id()}/cli")
    records.mark_running(job_id, f"{owner_id()}/cli")

    from tqdm import tqdm

    bar = tqdm(total=100, desc=f"{name} {chosen}", unit="%", file=sys.stderr,
               bar_format="{desc} {bar} {n:.0f}% {elapsed}{postfix}")
    cancel = threading.Event()

    def emit(event: JobEvent) -> None:
        if event[0] == "progress":
            bar.n = round(float(event[2]) * 100, 1)
            bar.set_postfix_str(str(event[3])[:60], refresh=True)

    def on_interrupt(_signum: int, _frame: Any) -> None:
        cancel.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C is final

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        final = execute(job, emit, cancel)
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    status = {"done": "done", "cancelled": "cancelled"}.get(final[0], "failed")
    if status == "done":
        payload = dict(final[2])
        records.finish(job_id, "done", payload=payload, detail="done (cli)")
    else:
        error = str(final[2]) if status == "failed" else None
        records.finish(job_id, status, error=error, detail=status)
    info = records.get(job_id)
    store.dispose()
    out = sys.stderr if as_json else sys.stdout
    if status != "done" or info is None:
        print(f"job {job_id} {status}: {final[2] if len(final) > 2 else ''}", file=out)
        raise typer.Exit(130 if status == "cancelled" else 1)
    result = info.result or {}
    print(f"job {job_id}: {result.get('text', '')}", file=out)
    for key, value in info.metrics.items():
        print(f"  {key}: {value:.6g}", file=out)
    for artifact in info.artifacts:
        print(f"  [{artifact.kind}] {artifact.path}", file=out)
    if as_json:
        summary: dict[str, Any] = dict(info.metrics)
        if spec.headline_metric in info.metrics:
            summary["headline"] = info.metrics[spec.headline_metric]
        print(json.dumps(summary), flush=True)
