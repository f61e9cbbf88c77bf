"""Build Typer commands from declarations: the NLU components' ``train``/``eval`` commands and
the course tools' ``evaluate``/``bench`` commands all come from here."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from nlp_core.components import Flag


def command(run: Callable[..., None], doc: str, params: Sequence[inspect.Parameter],
            flags: Sequence[Flag] = ()) -> Callable[..., None]:
    """A function Typer reads as a command with ``params`` plus a ``--X/--no-X`` option per
    flag; it calls ``run(**values)`` with the flags gathered in ``flags={...}``."""
    names = [flag.name for flag in flags]
    every = list(params) + [
        inspect.Parameter(flag.name, inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(flag.default, f"--{flag.name}/--no-{flag.name}",
                                               help=flag.help))
        for flag in flags]

    def invoke(**values: Any) -> None:
        chosen = {name: bool(values.pop(name)) for name in names}
        run(**values, flags=chosen)

    invoke.__signature__ = inspect.Signature(every)  # type: ignore[attr-defined]
    invoke.__doc__ = doc
    return invoke


def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    """A keyword parameter for :func:`command` (``default`` is usually a ``typer.Option``)."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                             default=default)


class ToolCommands(TyperGroup):
    """A command group that also offers each course tool's ``evaluate`` (or ``bench``) command
    under the tool's ``cli_name``: ``amlbot eval faces --dataset orl``. The tool registry is
    loaded only when such a command (or the group's help) is asked for."""

    verb = "evaluate"

    def _tools(self) -> dict[str, Any]:
        from course_tools import load_tools

        return {spec.cli_name: spec for _, spec in load_tools().items()
                if spec.cli_name and self.verb in [c.name for c in spec.commands]}

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *sorted(self._tools())]

    def get_command(self, ctx: Any, name: str) -> Any:
        found = super().get_command(ctx, name)
        if found is not None:
            return found
        spec = self._tools().get(name)
        return None if spec is None else _tool_command(name, spec.name, spec.command(self.verb))


class BenchCommands(ToolCommands):
    verb = "bench"


def _tool_command(name: str, tool: str, declared: Any) -> Any:
    """``--name value`` for each parameter of the tool command, plus ``--json``; runs the tool
    here as a recorded job (``amlbot tool run``) and prints its metrics."""
    params = [option(name, str | None, typer.Option(None, f"--{name.replace('_', '-')}",
                                                   help=_describe(name, info)))
              for name, info in declared.params.model_fields.items()]
    params.append(option("as_json", bool, typer.Option(
        False, "--json", help="End with one JSON line of the metrics (plus 'headline').")))

    def run(*, as_json: bool, flags: dict[str, bool], **values: str | None) -> None:
        from bot.cli.tool import report, run_tool

        words = [declared.name] + [f"{k}={v}" for k, v in values.items() if v is not None]
        info, headline = run_tool(tool, words, [], json_mode=as_json)
        report(info, headline, as_json)

    single = typer.Typer(add_completion=False)
    single.command(name)(command(run, f"{tool} {declared.name}: {declared.help}", params))
    return typer.main.get_command(single)


def _describe(name: str, info: Any) -> str:
    from course_tools.params import describe_field

    return describe_field(name, info)
