"""``amlbot tool``: list the course tools, or run one synchronously in this process."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from bot.jobs.records import JobInfo

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
    input_file: list[Path] = typer.Option(
        [], "--input", "-i", help="A file the tool reads, e.g. a photo (repeatable)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="End with one JSON line of the metrics (plus 'headline')."
    ),
) -> None:
    """Run a tool's command here, save its artifacts as a job, and print its metrics."""
    info, headline = run_tool(name, [command, *param] if command else param, input_file,
                              json_mode=as_json)
    report(info, headline, as_json)


def report(info: JobInfo, headline: str, as_json: bool) -> None:
    """Print a finished job's text, metrics and files (to stderr with ``as_json``, which ends
    with one JSON line of the metrics); a job that did not finish exits non-zero."""
    out = sys.stderr if as_json else sys.stdout
    if info.status != "done":
        print(f"job {info.id} {info.status}: {info.error or ''}", file=out)
        raise typer.Exit(130 if info.status == "cancelled" else 1)
    result = info.result or {}
    print(f"job {info.id}: {result.get('text', '')}", file=out)
    for key, value in info.metrics.items():
        print(f"  {key}: {value:.6g}", file=out)
    for artifact in info.artifacts:
        print(f"  [{artifact.kind}] {artifact.path}", file=out)
    if as_json:
        summary: dict[str, Any] = dict(info.metrics)
        if headline in info.metrics:
            summary["headline"] = info.metrics[headline]
        print(json.dumps(summary), flush=True)


def run_tool(name: str, words: list[str], inputs: list[Path], *,
             json_mode: bool = False) -> tuple[JobInfo, str]:
    """Run ``name`` with ``words`` (an optional command, then name=value) in this process as a
    recorded job, with a progress bar on stderr; returns the job and the tool's headline metric.
    Bad names or parameters end the command with status 2."""
    import mimetypes

    from tqdm import tqdm

    from bot.jobs.manager import JobManager
    from bot.settings import get_settings
    from bot.storage.store import Store
    from course_tools import load_tools
    from course_tools.base import InputFile
    from course_tools.invocation import parse_request
    from course_tools.params import ParamError

    settings = get_settings()
    try:
        spec = load_tools().find(name)
        invocation = parse_request(spec, words).validate()
    except (KeyError, ParamError) as exc:
        problems = exc.problems if isinstance(exc, ParamError) else [str(exc.args[0])]
        for problem in problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2) from None
    files = []
    for path in inputs:
        if path.stat().st_size > settings.max_upload_bytes:
            typer.echo(f"error: {path} is over {settings.max_upload_bytes:,} bytes "
                       "(AMLBOT_MAX_UPLOAD_BYTES)", err=True)
            raise typer.Exit(2)
        files.append(InputFile(path.name, path.read_bytes(), mimetypes.guess_type(path)[0]))
    store = Store(settings.resolved_database_url)
    manager = JobManager(settings, store)
    bar = tqdm(total=100, desc=invocation.title, unit="%", file=sys.stderr,
               bar_format="{desc} {bar} {n:.0f}% {elapsed}{postfix}")
    cancel = threading.Event()

    def progress(fraction: float, detail: str) -> None:
        bar.n = round(fraction * 100, 1)
        bar.set_postfix_str(detail[:60], refresh=True)

    def on_interrupt(_signum: int, _frame: Any) -> None:
        cancel.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C is final

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        info = manager.run_here(invocation, inputs=files, on_progress=progress, cancel=cancel)
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
        manager.close()
        store.dispose()
    return info, spec.headline_metric
