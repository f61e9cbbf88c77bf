"""``amlbot eval``: score the NLU models and write Rasa-style reports (metrics JSON, every miss,
a confusion-matrix PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    help="Evaluate the NLU models; reports go to --out (default <data_dir>/reports).",
    no_args_is_help=True,
)

_DATA = typer.Option(None, "--data", help="An evaluation file (see each command).")
_MODEL = typer.Option(None, "--model-dir", help="A saved model dir (default: the trained one).")
_OUT = typer.Option(None, "--out", help="Report dir (default <data_dir>/reports).")
_JSON = typer.Option(False, "--json", help="End with one JSON line of metrics.")


def _finish(metrics: dict[str, Any], as_json: bool) -> None:
    from nlp_core.evaluation.report import print_metrics

    print_metrics(metrics, as_json=as_json, echo=typer.echo)


def _out_dir(out: Path | None) -> Path:
    from bot.settings import get_settings

    return out or get_settings().data_dir / "reports"


def registry_tool_examples() -> dict[str, list[str]]:
    """Each registered course tool's phrasings (empty when no tool registry is available)."""
    try:
        from nlp_core.pipeline import tool_examples
    except ImportError:
        return {}
    return tool_examples()


@app.command("intent")
def intent(data: Path | None = _DATA, model_dir: Path | None = _MODEL,
           out: Path | None = _OUT, as_json: bool = _JSON) -> None:
    """Intent and routing accuracy. --data: a TSV with header route<TAB>detail<TAB>text
    (route chitchat|programming|tool; detail: the language or tool name, may be empty).
    Without --data: the fixed held-out part of the training sources."""
    from bot.settings import get_settings
    from nlp_core.evaluation.intent import run

    # The tools' phrasings matter only to train a model or to carve the held-out part.
    tools = registry_tool_examples() if data is None or model_dir is None else None
    metrics = run(data, model_dir, _out_dir(out), get_settings(), tool_examples=tools)
    _finish(metrics, as_json)


@app.command("tags")
def tags(data: Path | None = _DATA, model_dir: Path | None = _MODEL,
         out: Path | None = _OUT, as_json: bool = _JSON,
         baseline: bool = typer.Option(True, "--baseline/--no-baseline",
                                       help="Also train and score the course baseline.")) -> None:
    """Tag F1 (weighted/macro/micro) and main-language accuracy. --data: a TSV like
    so_tags/train.tsv; without it, the fixed test split the default model did not train on."""
    from bot.settings import get_settings
    from nlp_core.evaluation.tags import run

    _finish(run(data, model_dir, _out_dir(out), get_settings(), baseline=baseline), as_json)


@app.command("ner")
def ner(data: Path | None = _DATA, model_dir: Path | None = _MODEL,
        out: Path | None = _OUT, as_json: bool = _JSON) -> None:
    """Entity recognition (see nlp_core.evaluation.ner)."""
    from bot.settings import get_settings
    from nlp_core.evaluation.ner import run

    _finish(run(data, model_dir, _out_dir(out), get_settings()), as_json)


@app.command("duplicates")
def duplicates(data: Path | None = _DATA, model_dir: Path | None = _MODEL,
               out: Path | None = _OUT, as_json: bool = _JSON) -> None:
    """Duplicate-question search (see nlp_core.evaluation.duplicates)."""
    from bot.settings import get_settings
    from nlp_core.evaluation.duplicates import run

    _finish(run(data, model_dir, _out_dir(out), get_settings()), as_json)
