"""One path from a request to a validated tool call, whoever asks.

``/train rl.dqn steps=20k``, ``/run demo.montecarlo_pi n=1M``, ``/play rl.dqn 3f2a``,
``/remember alice`` (a tool's own chat command), ``/lhc zmumu`` (a course command), an NLU tool
intent with its slots, and ``amlbot tool run NAME [COMMAND] -p k=v`` all become a
:class:`ToolRequest` (the tool and command chosen, raw values collected: cheap, so access can be
checked before any value is read), and then one :class:`ToolInvocation` (the parameters validated
once, typed from here to the tool).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from course_tools.base import ToolCommand, ToolParams, ToolSpec
from course_tools.params import ParamError, build_params, split_assignments


@dataclass(frozen=True)
class ToolInvocation:
    """A tool command with its validated parameters, ready to run."""

    spec: ToolSpec
    command: ToolCommand[Any]
    params: ToolParams

    @property
    def title(self) -> str:
        return f"{self.spec.name} {self.command.name}"

    def given(self) -> dict[str, Any]:
        """The parameters the request set (the rest are defaults)."""
        return {k: v for k, v in self.params.model_dump().items()
                if k in self.params.model_fields_set}

    def describe(self) -> str:
        """``steps=20000 lr=0.001``, or ``default parameters``."""
        return " ".join(f"{k}={v}" for k, v in self.given().items()) or "default parameters"


@dataclass(frozen=True)
class ToolRequest:
    """A tool and command chosen, with the raw values given for its parameters."""

    spec: ToolSpec
    command: ToolCommand[Any]
    raw: Mapping[str, Any] = field(default_factory=dict)
    from_slots: bool = False

    def validate(self) -> ToolInvocation:
        """Read and check every value; :class:`ParamError` lists each problem readably."""
        params = build_params(self.command.params, self.raw, where=f"{self.spec.name} "
                              f"{self.command.name}", ignore_unknown=self.from_slots)
        return ToolInvocation(self.spec, self.command, params)


def words_of(args: str | Sequence[str]) -> list[str]:
    """Shell-like words of an argument string (quotes group), or the given words."""
    if not isinstance(args, str):
        return list(args)
    try:
        return shlex.split(args)
    except ValueError as exc:
        raise ParamError([f"could not read that: {exc}"]) from None


def parse_request(spec: ToolSpec, args: str | Sequence[str] = (), *, verb: str | None = None,
                  command: str | None = None,
                  slots: Mapping[str, Any] | None = None) -> ToolRequest:
    """Choose the command of ``spec`` and collect the raw parameter values.

    ``args`` are the words after the tool's name: ``name=value`` pairs, and bare words. The
    command is ``verb``'s when a verb fixes it (``/train``, ``/play``); else a first bare word
    that names a command of the tool (``/run demo.montecarlo_pi sweep``, ``/faces list``);
    else ``command`` (a chat command's own); else :meth:`ToolSpec.default_command`. The
    remaining bare words fill the command's ``positional`` parameters in order. ``slots`` are
    typed values from the NLU; keys the command does not have are dropped.
    """
    words = words_of(args)
    bare = [w for w in words if "=" not in w]
    assignments = [w for w in words if "=" in w]
    names = [c.name for c in spec.commands]
    if verb is not None:
        chosen = spec.default_command(verb)
    elif bare and bare[0].lower() in names:
        chosen = spec.command(bare.pop(0).lower())
    elif command is not None:
        chosen = spec.command(command)
    else:
        chosen = spec.default_command()
    raw: dict[str, Any] = dict(slots or {})
    raw.pop("command", None)
    raw.update(split_assignments(assignments))
    if len(bare) > len(chosen.positional):
        extra = bare[len(chosen.positional)]
        raise ParamError([
            f"I don't know what {extra!r} means here: parameters are written name=value. "
            f"/tools {spec.name} lists them."])
    for name, value in zip(chosen.positional, bare, strict=False):
        if name in raw:
            raise ParamError([f"{name} is given twice"])
        raw[name] = value
    return ToolRequest(spec, chosen, raw, from_slots=slots is not None)
