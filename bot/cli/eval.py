"""``amlbot eval``: score the NLU models and write Rasa-style reports (metrics JSON, every miss,
a confusion-matrix PNG). One command per registered component with an evaluation
(``nlp_core.components``), and one per course tool that declares an ``evaluate`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from bot.cli.generated import ToolCommands, command, option
from nlp_core.components import Component, Request, components

app = typer.Typer(
    cls=ToolCommands,
    help="Evaluate the NLU models (reports go to --out, default <data_dir>/reports), and the "
         "course tools that declare an evaluation.",
    no_args_is_help=True,
)

_COMMON = [
    option("data", Path | None, typer.Option(None, "--data",
                                             help="An evaluation file (see each command).")),
    option("model_dir", Path | None, typer.Option(
        None, "--model-dir", help="A saved model dir (default: the trained one).")),
    option("out", Path | None, typer.Option(None, "--out",
                                            help="Report dir (default <data_dir>/reports).")),
    option("as_json", bool, typer.Option(False, "--json",
                                         help="End with one JSON line of metrics.")),
]


def _evaluator(component: Component) -> Any:
    assert component.evaluate is not None
    evaluate = component.evaluate

    def run(*, data: Path | None, model_dir: Path | None, out: Path | None, as_json: bool,
            flags: dict[str, bool]) -> None:
        from bot.app import tool_examples, workspace
        from bot.settings import get_settings
        from nlp_core.evaluation.report import print_metrics

        request = Request(flags=flags, tool_examples=tool_examples(), data=data,
                          model_dir=model_dir, out_dir=out)
        metrics = evaluate(workspace(get_settings()), request)
        print_metrics(metrics, as_json=as_json, echo=typer.echo)

    return command(run, component.eval_help or component.summary, _COMMON,
                   component.eval_flags)


for _name, _component in components.items():
    if _component.evaluate is not None:
        app.command(_name)(_evaluator(_component))


@app.command("answers")
def answers(
    questions: Path = typer.Argument(..., help="A TSV of 'kind<TAB>text' lines (kind: "
                                     "programming | smalltalk), e.g. "
                                     "docs/eval/answers/questions.tsv."),
    out: Path = typer.Option(Path("answers-eval"), "--out", help="Where the files go."),
    limit: int | None = typer.Option(None, min=1, help="The first N questions only."),
    seed: int = typer.Option(20260517, help="Seeds the A/B order of each pair."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line of figures."),
) -> None:
    """Blind side-by-side of the answers with and without the instruction model.

    Writes blind.md (judge this: both answers in random order), key.tsv (which is which:
    open it after), outputs.jsonl and details.jsonl (threads found, citations, timings)."""
    import json

    from bot.bench.side_by_side import side_by_side
    from bot.settings import get_settings
    from nlp_core.llm import QuestionsError

    try:
        summary = side_by_side(get_settings(), questions, out, limit=limit, seed=seed,
                               progress=lambda f, d: typer.echo(f"  {100 * f:5.1f}%  {d}",
                                                                err=True))
    except (QuestionsError, RuntimeError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{summary['questions']} questions written to {out} (judge blind.md; "
               f"{summary['share_citing_a_thread']} of the grounded answers cite a thread)")
    if as_json:
        typer.echo(json.dumps(summary))


@app.command("persona")
def persona(
    data: Path = typer.Option(Path("docs/eval/persona/questions.tsv"), "--data",
                              help="A 'topic<TAB>text' file of questions about the bot, kept "
                                   "apart from the examples it learns from."),
    small_talk: int = typer.Option(5000, min=0, help="Real small-talk prompts sampled from "
                                   "chitchat-dataset (all of chatterbot-corpus but its "
                                   "bot-profile and AI files is added) that should get no "
                                   "answer about the bot; those in the chit-chat index, which "
                                   "the persona learns from, are left out."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line of figures."),
) -> None:
    """How well the bot tells questions about itself ("what is your name?") from small talk,
    with the persona the chat uses (learnt against the chit-chat index, built if missing)."""
    import json
    import random

    from bot.app import workspace
    from bot.settings import get_settings
    from bot.skills.persona import Persona, evaluate, read_questions
    from nlp_core.chitchat import chatterbot_pairs, chitchat_dataset_pairs, load_or_train_chitchat
    from nlp_core.encoder import default_encoder

    try:
        questions = read_questions(data)
    except (OSError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    space = workspace(get_settings())
    encoder = default_encoder(space)
    chitchat = load_or_train_chitchat(space, encoder)
    learnt = {prompt.lower() for prompt in chitchat.prompts_}
    everyday = [p.prompt for p in chitchat_dataset_pairs()]
    random.Random(0).shuffle(everyday)
    curated = [p.prompt for p in chatterbot_pairs()
               if p.source not in ("chatterbot:botprofile", "chatterbot:ai")]
    chat = [text for text in everyday[:small_talk] + curated if text.lower() not in learnt]
    report = evaluate(Persona(encoder.encode).fit(chitchat.prompt_vectors()), questions, chat)
    for row in report["by_threshold"]:
        mark = "  <- used" if row["threshold"] == report["threshold_used"] else ""
        typer.echo(f"p >= {row['threshold']:.2f}: {row['questions_answered']}/"
                   f"{report['questions']} questions about the bot answered "
                   f"({row['answered_on_their_topic']} on their topic), "
                   f"{row['small_talk_answered']}/{report['small_talk']} small-talk messages "
                   f"taken for one{mark}")
    if as_json:
        typer.echo(json.dumps(report))
