"""``amlbot bench``: measure speed (numbers go to docs/benchmarks/)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import typer

from bot.cli.bench_index import index as bench_index
from bot.cli.generated import BenchCommands

app = typer.Typer(cls=BenchCommands,
                  help="Speed benchmarks (each writes its page under docs/benchmarks/), and "
                       "the course tools' own benchmarks.",
                  no_args_is_help=True)


@app.command("startup")
def startup(
    runs: int = typer.Option(10, min=1, help="Timed cold starts (after one first run)."),
    message: str = typer.Option("/start", help="The line piped into `amlbot chat`."),
    output: Path = typer.Option(
        Path("docs/benchmarks/startup.md"), help="The page whose table row is added or updated."
    ),
    write: bool = typer.Option(True, "--write/--no-write", help="Update the output page."),
    as_json: bool = typer.Option(
        False, "--json", help="End with one JSON line: median/p90/max and every run."
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir",
        help="Start on this data dir (e.g. one with trained models) instead of an empty one.",
    ),
) -> None:
    """Time a fresh `amlbot chat` answering "/start": median, p90 and max over N runs.

    Set AMLBOT_NLU_ENABLED / AMLBOT_DATABASE_URL in the environment to pick the configuration.
    """
    import os

    from bot.bench.startup import measure_startup, write_report

    result = measure_startup(runs=runs, message=message, data_dir=data_dir)
    if data_dir is not None:
        result.configuration += ", trained data dir"
    s = result.summary()
    typer.echo(f"{s['configuration']}: first reply after median {s['median_s']:.3f} s, "
               f"p90 {s['p90_s']:.3f} s, max {s['max_s']:.3f} s over {s['runs']} runs, "
               f"CPU median {s['cpu_median_s']:.3f} s "
               f"(first run on an empty data dir {s['first_run_s']:.3f} s; "
               f"target < {s['target_s']:g} s: {'met' if s['under_target'] else 'MISSED'})")
    if write:
        settings_env = " ".join(
            f"{name}={shlex.quote(os.environ[name])}"
            for name in ("AMLBOT_NLU_ENABLED",) if name in os.environ
        )
        if os.environ.get("AMLBOT_DATABASE_URL"):
            # The URL may hold a password: name only its kind.
            scheme = os.environ["AMLBOT_DATABASE_URL"].split(":", 1)[0]
            settings_env += f" AMLBOT_DATABASE_URL=<{scheme} URL>"
        command = f"{settings_env} amlbot bench startup --runs {runs}".strip()
        if data_dir is not None:
            command += " --data-dir DATA_DIR"
        if message != "/start":
            command += f" --message {shlex.quote(message)}"
        write_report(result, output, command)
        typer.echo(f"updated {output}")
    if as_json:
        typer.echo(json.dumps(result.to_dict()))


@app.command("answer")
def answer(
    messages: int = typer.Option(1000, min=10, help="Timed messages (a fixed mix of routes)."),
    index_size: int = typer.Option(100_000, min=1, help="Thread-index size to measure at."),
    generate: bool = typer.Option(
        False, "--generate", help="Also with the instruction model on: the mix again with a "
        "generated answer after each programming question, the model's first-token and "
        "60-token times, and 20 chats asking at once."),
    pace_ms: float = typer.Option(0.0, "--pace-ms", min=0.0, help="Start one message every "
                                  "this many ms, as chats arrive (0: each right after the "
                                  "last, a flood; the model then runs only when its pauses "
                                  "for the answers run out)."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line of metrics."),
) -> None:
    """Time Assistant.handle on mixed messages: p50/p99 per route and overall, peak RSS."""
    from bot.bench.answer import measure_answers
    from bot.settings import get_settings

    result = measure_answers(get_settings(), n=messages, index_size=index_size,
                             generate=generate, pace_ms=pace_ms,
                             progress=lambda line: typer.echo(f"... {line}", err=True)).to_dict()
    typer.echo(f"{result['messages']} messages, index {result['index_size']:,} titles: "
               f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
               f"peak RSS {result['rss_mb']} MB")
    if generate:
        typer.echo(f"with generated answers: p50 {result['generation_on_p50_ms']} ms, p99 "
                   f"{result['generation_on_p99_ms']} ms; first token "
                   f"{result['first_token_p50_ms']} ms p50, 60 tokens "
                   f"{result['generated_answer_p50_ms']} ms p50; 20 chats at once: slowest "
                   f"retrieval answer {result['burst_retrieval_max_ms']} ms (without the "
                   f"model {result['burst_off_retrieval_max_ms']} ms), "
                   f"{result['burst_chats_told_their_place']} told their place in the queue")
    if as_json:
        typer.echo(json.dumps(result))


@app.command("telegram")
def telegram(
    output: Path = typer.Option(
        Path("docs/benchmarks/telegram.md"), help="The page the figures are written to."
    ),
    select: str | None = typer.Option(
        None, "-k", help="Only the scenario tests whose names match (pytest -k)."
    ),
    busy: int = typer.Option(
        0, "--busy", min=0, max=16,
        help="Keep this many CPU-bound processes running beside the bot (a machine under load).",
    ),
    write: bool = typer.Option(True, "--write/--no-write", help="Write the output page."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line per scenario."),
) -> None:
    """The Telegram channel under faults, full size: kill -9 two seconds into a 200-chat
    burst (three runs), a 60 s sendMessage outage (500s, then 502s), answers hanging past the
    old 5 s timeout, and a refused token; chats answered, lost and answered twice. Runs the
    slow tests of tests/bot/channels/test_telegram_faults.py, so run it from a checkout."""
    from bot.bench.telegram import bench

    command = "amlbot bench telegram" + (f" -k {shlex.quote(select)}" if select else "")
    command += f" --busy {busy}" if busy else ""
    code, outcomes = bench(Path.cwd(), output, command, select=select, busy=busy, write=write)
    for outcome in outcomes:
        typer.echo(f"{outcome['scenario']}: {outcome['answered']}/{outcome['chats']} answered, "
                   f"{outcome['lost']} lost, {outcome['duplicated']} twice, "
                   f"{outcome['seconds']:.1f} s")
        if as_json:
            typer.echo(json.dumps(outcome))
    if write and outcomes:
        typer.echo(f"updated {output}")
    raise typer.Exit(code)


app.command("index")(bench_index)
