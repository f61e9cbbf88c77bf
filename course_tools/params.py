"""Turn ``k=v`` strings (or NLU slots) into a tool's parameters, with errors people can act on.

Numbers may be written ``20000``, ``20k``, ``1.5M``, ``1e5``, ``10^5`` or ``20_000``. Every error
names the parameter and shows what is allowed: ``steps must be between 1000 and 1000000 (got -5)``.
"""

from __future__ import annotations

import difflib
import re
import shlex
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

P = TypeVar("P", bound=BaseModel)

_SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9}
_NUMBER = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)([kmbg]?)$", re.IGNORECASE)
_POWER = re.compile(r"^([+-]?\d+)\s*(?:\^|\*\*)\s*(\d+)$")
_TRUE = {"true", "yes", "y", "on", "1"}
_FALSE = {"false", "no", "n", "off", "0"}


class ParamError(ValueError):
    """Parameters that cannot be used; ``problems`` holds one readable line per mistake."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def split_assignments(args: str | Iterable[str]) -> dict[str, str]:
    """``"steps=20k env=CartPole-v1"`` (or its tokens) -> ``{"steps": "20k", ...}``."""
    if isinstance(args, str):
        try:
            tokens = shlex.split(args)
        except ValueError as exc:
            raise ParamError([f"could not read the parameters: {exc}"]) from None
    else:
        tokens = list(args)
    raw: dict[str, str] = {}
    problems = []
    for token in tokens:
        key, sep, value = token.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            problems.append(f"{token!r} is not a parameter: write name=value, e.g. steps=20000")
            continue
        if key in raw:
            problems.append(f"{key} is given twice")
            continue
        raw[key] = value.strip()
    if problems:
        raise ParamError(problems)
    return raw


def parse_number(text: str) -> float:
    """``"20k"`` -> 20000.0, ``"1e5"`` -> 100000.0, ``"10^6"`` -> 1e6; ValueError otherwise."""
    cleaned = text.strip().replace("_", "").replace(",", "")
    power = _POWER.match(cleaned)
    if power:
        base, exponent = int(power.group(1)), int(power.group(2))
        if exponent > 400:
            raise ValueError(text)
        try:
            return float(base**exponent)
        except OverflowError:  # 9^400: a number, but past any bound a parameter has
            raise ValueError(text) from None
    match = _NUMBER.match(cleaned)
    if not match:
        raise ValueError(text)
    value = float(match.group(1))
    if match.group(2):
        value *= _SUFFIXES[match.group(2).lower()]
    return value


def build_params(
    model: type[P], raw: Mapping[str, Any], *, where: str = "", ignore_unknown: bool = False
) -> P:
    """Validate ``raw`` (strings from ``k=v`` or typed NLU slots) into ``model``.

    Raises :class:`ParamError` whose lines show the valid range or choices of each bad field.
    ``ignore_unknown`` drops keys the model does not have (for NLU slots) instead of failing.
    """
    fields = model.model_fields
    problems: list[str] = []
    values: dict[str, Any] = {}
    bad: set[str] = set()
    for key, value in raw.items():
        name = key.strip().lower().replace("-", "_")
        if name not in fields:
            if ignore_unknown:
                continue
            problems.append(_unknown_key(name, list(fields), where))
            continue
        try:
            values[name] = _coerce(name, fields[name], value)
        except ValueError as exc:
            problems.append(str(exc))
            bad.add(name)
    try:
        validated = model.model_validate(values)
    except ValidationError as exc:
        problems.extend(_explain(model, exc, values, skip=bad))
    else:
        if not problems:
            return validated
    raise ParamError(problems)


def describe_field(name: str, info: FieldInfo) -> str:
    """One line for help texts: ``steps: whole number, 1000–1000000 (default 20000) — ...``."""
    kind, choices = _kind(info.annotation)
    parts = [f"{name}: "]
    if choices:
        parts.append("one of " + ", ".join(str(c) for c in choices))
    else:
        parts.append(kind)
        bounds = _bounds_text(info)
        if bounds:
            parts.append(f", {bounds}")
    if not info.is_required():
        parts.append(f" (default {info.get_default(call_default_factory=True)})")
    if info.description:
        parts.append(f" — {info.description}")
    return "".join(parts)


def describe_params(model: type[BaseModel]) -> list[str]:
    """Help lines for every field of ``model``."""
    return [describe_field(name, info) for name, info in model.model_fields.items()]


# --- internals ----------------------------------------------------------------------------


def _unknown_key(name: str, known: list[str], where: str) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    place = f" for {where}" if where else ""
    return f"unknown parameter {name!r}{place}{hint}; valid: {', '.join(known)}"


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        optional = len(args) < len(get_args(annotation))
        if len(args) == 1:
            return args[0], optional
    return annotation, False


def _kind(annotation: Any) -> tuple[str, tuple[Any, ...]]:
    """A readable type name, and the choices of a Literal."""
    inner, _ = _strip_optional(annotation)
    if get_origin(inner) is Literal:
        return "choice", get_args(inner)
    if inner is bool:
        return "yes/no", ()
    if inner is int:
        return "whole number", ()
    if inner is float:
        return "number", ()
    if inner is str:
        return "text", ()
    return getattr(inner, "__name__", str(inner)), ()


def _limits(info: FieldInfo) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in info.metadata:
        for attr in ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern"):
            value = getattr(item, attr, None)
            if value is not None:
                found[attr] = value
    return found


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _bounds_text(info: FieldInfo) -> str:
    limits = _limits(info)
    low = ("ge", limits["ge"]) if "ge" in limits else (("gt", limits["gt"]) if "gt" in limits
                                                        else None)
    high = ("le", limits["le"]) if "le" in limits else (("lt", limits["lt"]) if "lt" in limits
                                                        else None)
    if low and high and low[0] == "ge" and high[0] == "le":
        return f"between {_fmt(low[1])} and {_fmt(high[1])}"
    parts = []
    if low:
        parts.append(("at least " if low[0] == "ge" else "more than ") + _fmt(low[1]))
    if high:
        parts.append(("at most " if high[0] == "le" else "less than ") + _fmt(high[1]))
    if "min_length" in limits or "max_length" in limits:
        parts.append(f"{limits.get('min_length', 0)}–{limits.get('max_length', '…')} characters")
    if "pattern" in limits:
        parts.append(f"matching {limits['pattern']}")
    return " and ".join(parts)


def _requirement(name: str, info: FieldInfo) -> str:
    """``steps must be a whole number between 1000 and 1000000``."""
    kind, choices = _kind(info.annotation)
    if choices:
        return f"{name} must be one of {', '.join(str(c) for c in choices)}"
    bounds = _bounds_text(info)
    article = "a " if kind in ("whole number", "number") else ""
    if kind == "yes/no":
        return f"{name} must be yes or no (true/false)"
    return f"{name} must be {article}{kind}" + (f" {bounds}" if bounds else "")


def _coerce(name: str, info: FieldInfo, value: Any) -> Any:
    """Convert one raw value to the field's type; ValueError carries the readable message."""
    inner, optional = _strip_optional(info.annotation)
    if isinstance(value, str):
        text = value.strip()
        if optional and text.lower() in ("none", "null", ""):
            return None
    else:
        text = None
    if get_origin(inner) is Literal:
        choices = get_args(inner)
        candidate = value if text is None else text
        for choice in choices:
            if candidate == choice:
                return choice
        for choice in choices:  # case-insensitive, and numbers written as text
            if str(choice).lower() == str(candidate).lower():
                return choice
        close = difflib.get_close_matches(str(candidate), [str(c) for c in choices], n=1,
                                          cutoff=0.5)
        hint = f" — did you mean {close[0]}?" if close else ""
        raise ValueError(f"{_requirement(name, info)} (got {candidate!r}){hint}")
    if inner is bool:
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"{_requirement(name, info)} (got {value!r})")
    if inner in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"{_requirement(name, info)} (got {value!r})")
        if isinstance(value, int | float):
            number = float(value)
        else:
            try:
                number = parse_number(str(value))
            except ValueError:
                raise ValueError(f"{_requirement(name, info)} (got {value!r})") from None
        if inner is int:
            if not number.is_integer():
                raise ValueError(f"{_requirement(name, info)} (got {_fmt(number)})")
            return int(number) if not isinstance(value, int) else value
        return number
    return value if text is None else text


def _explain(model: type[BaseModel], exc: ValidationError, values: Mapping[str, Any],
             skip: set[str]) -> list[str]:
    problems = []
    for error in exc.errors():
        loc = error.get("loc") or ()
        name = str(loc[0]) if loc else ""
        if name in skip:
            continue
        if error.get("type") == "missing" and name in model.model_fields:
            described = describe_field(name, model.model_fields[name])
            problems.append(f"{name} is required ({described})")
            continue
        info = model.model_fields.get(name)
        if info is None:
            message = str(error.get("msg", "invalid parameters"))
            problems.append(message.removeprefix("Value error, "))
            continue
        shown = values.get(name, error.get("input"))
        problems.append(f"{_requirement(name, info)} (got {_fmt(shown)})")
    return problems
