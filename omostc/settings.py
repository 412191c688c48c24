"""One definition of each setting: dataclass fields with metadata, from which the JSON Schemas,
the loaders, the command-line options and their ``--help`` texts are all derived.

A field declared with ``setting(default, help=..., minimum=..., ...)`` is

* a JSON Schema property (``schema_of``), so YAML specs, profiles and PNG chunks are checked by
  the same rules as flags;
* a click option (``click_options``), whose value is checked by ``check_value`` (the same
  ranges, NaN and infinities rejected) before anything loads;
* read and written as plain data (``from_data``, ``to_data``), nested dataclasses included.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass
from functools import cache
from typing import Any, Union

from omostc.diagnostics import Diagnostic, SettingsError

MAX_FINITE = 1.0e300  # keeps .inf out of schemas; NaN is rejected by the loaders' own check
KEY = "omostc.setting"


@dataclass(frozen=True)
class Setting:
    """What a field means and allows; every front end reads it from here."""

    help: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    choices: tuple[str, ...] | None = None
    multiple_of: int | None = None
    min_length: int | None = None
    pattern: str | None = None
    section: str = "render"  # where a backend option lives in a profile: "render" or "load" (top level)
    cli: bool = True  # offered as a command-line flag
    pixels: bool = True  # changes the pictures (so it is part of an output's settings key)
    flag: str | None = None  # the flag's name, when not --field-name


def setting(default: Any = MISSING, *, help: str, default_factory: Any = MISSING, **meta: Any) -> Any:
    """A dataclass field carrying its ``Setting``."""
    info = Setting(help=help, **meta)
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={KEY: info})
    return dataclasses.field(default=default, metadata={KEY: info})


def info(field: dataclasses.Field) -> Setting:
    found = field.metadata.get(KEY)
    if found is None:
        raise TypeError(f"field {field.name!r} is not declared with setting()")
    return found


@cache
def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def fields_of(cls: type) -> list[tuple[dataclasses.Field, Any, Setting]]:
    """(field, its type, its Setting) for every field of a settings dataclass."""
    types_ = hints(cls)
    return [(f, types_[f.name], info(f)) for f in dataclasses.fields(cls)]


# --- JSON Schema ---------------------------------------------------------------------------

def _type_schema(tp: Any) -> dict[str, Any]:
    tp, _ = _unwrap_optional(tp)
    if dataclasses.is_dataclass(tp):
        return schema_of(tp)  # type: ignore[arg-type]
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}  # NaN and infinities: the loaders reject them, every field alike
    if tp is str:
        return {"type": "string"}
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        return {"type": "array", "items": _type_schema(item)}
    raise TypeError(f"no JSON Schema for {tp!r}")


_SCHEMA_KEYWORDS = {"minimum": "minimum", "exclusive_minimum": "exclusiveMinimum", "maximum": "maximum",
                    "multiple_of": "multipleOf", "min_length": "minLength", "pattern": "pattern"}


def _constraints(s: Setting) -> dict[str, Any]:
    """The JSON Schema keywords of a Setting's rules (those it sets)."""
    return {keyword: getattr(s, name) for name, keyword in _SCHEMA_KEYWORDS.items() if getattr(s, name) is not None}


def property_schema(tp: Any, s: Setting) -> dict[str, Any]:
    base = _type_schema(tp)
    if s.choices is not None:
        return {"enum": list(s.choices), "description": s.help}  # the values say the type
    if base.get("type") == "array":
        item_rules = {k: v for k, v in _constraints(s).items() if k != "minLength"}
        base = {**base, "items": {**base["items"], **item_rules}}
        if s.min_length is not None:
            base["minItems"] = s.min_length
    else:
        base = {**base, **_constraints(s)}
        if "exclusiveMinimum" in base:
            base.pop("minimum", None)
    return base if "description" in base else {**base, "description": s.help}


def schema_of(cls: type, *, exclude: tuple[str, ...] = (), description: str | None = None) -> dict[str, Any]:
    """The JSON Schema object of a settings dataclass; fields without a default are required."""
    props = {f.name: property_schema(tp, s) for f, tp, s in fields_of(cls) if f.name not in exclude}
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    required = [f.name for f in dataclasses.fields(cls)
                if f.name not in exclude and f.default is MISSING and f.default_factory is MISSING]
    if required:
        out["required"] = required
    if description or cls.__doc__:
        out["description"] = description or " ".join((cls.__doc__ or "").split())
    return out


# --- values --------------------------------------------------------------------------------

def check_value(name: str, tp: Any, s: Setting, value: Any) -> str | None:
    """Why ``value`` is not allowed for setting ``name``, or None: the same rules as the schema."""
    why = broken_rule(tp, s, value)
    return f"{name} {why}" if why else None


def broken_rule(tp: Any, s: Setting, value: Any) -> str | None:
    """The rule ``value`` breaks ("must be at most 100, not 101"), or None."""
    if value is None:
        return None
    tp, _ = _unwrap_optional(tp)
    if typing.get_origin(tp) is list:
        return next((why for item in value if (why := broken_rule(typing.get_args(tp)[0], s, item))), None)
    if s.choices is not None:
        return None if value in s.choices else f"must be one of {', '.join(s.choices)}, not {value!r}"
    if tp in (int, float):
        return _number_rule(tp, s, value)
    if tp is str and s.min_length is not None and len(value) < s.min_length:
        return "must not be empty"
    if tp is str and s.pattern is not None and not re.search(s.pattern, value):
        return f"must match {s.pattern}"
    return None


def _number_rule(tp: Any, s: Setting, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, not {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, not {value}"
    if tp is int and not float(value).is_integer():
        return f"must be a whole number, not {value!r}"
    if s.minimum is not None and value < s.minimum:
        return f"must be at least {_num(s.minimum)}, not {_num(value)}"
    if s.exclusive_minimum is not None and value <= s.exclusive_minimum:
        return f"must be more than {_num(s.exclusive_minimum)}, not {_num(value)}"
    if s.maximum is not None and value > s.maximum:
        return f"must be at most {_num(s.maximum)}, not {_num(value)}"
    if s.multiple_of is not None and value % s.multiple_of:
        return f"must be a multiple of {s.multiple_of}, not {_num(value)}"
    return None


def range_text(s: Setting) -> str:
    """The allowed range as ``--help`` shows it: ``[64<=x<=8192, multiple of 8]``."""
    low = f"{_num(s.minimum)}<=" if s.minimum is not None else \
        f"{_num(s.exclusive_minimum)}<" if s.exclusive_minimum is not None else ""
    high = f"<={_num(s.maximum)}" if s.maximum is not None and s.maximum < MAX_FINITE else ""
    parts = [f"{low}x{high}"] if low or high else []
    if s.multiple_of is not None:
        parts.append(f"multiple of {s.multiple_of}")
    return f"  [{', '.join(parts)}]" if parts else ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


def check(obj: Any, *, source: str = "<settings>") -> None:
    """Raise SettingsError listing every value of a settings dataclass (nested ones too) that
    breaks its rules."""
    problems = list(_problems(obj, ""))
    if problems:
        raise SettingsError([Diagnostic("error", why, file=source) for why in problems])


def _problems(obj: Any, prefix: str):
    for f, tp, s in fields_of(type(obj)):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _problems(value, f"{prefix}{f.name}.")
            continue
        why = check_value(prefix + f.name, tp, s, value)
        if why:
            yield why


def from_data(cls: type, data: dict[str, Any]) -> Any:
    """A settings dataclass from plain data (already schema-checked); nested dataclasses too.
    Keys the class does not have are an error. An integer written as a float (``896.0``, an
    integer to JSON Schema) becomes an int; any other value is kept for ``check`` to judge."""
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise SettingsError(f"unknown setting{'s' if len(unknown) > 1 else ''}: {', '.join(sorted(map(str, unknown)))}")
    kwargs = {}
    for f, tp, _ in fields_of(cls):
        if f.name not in data:
            continue
        inner, _ = _unwrap_optional(tp)
        value = data[f.name]
        if dataclasses.is_dataclass(inner) and value is not None:
            if not isinstance(value, dict):
                names = ", ".join(g.name for g in dataclasses.fields(inner))
                raise SettingsError(f"{f.name} must be a mapping of settings ({names})")
            base = getattr(cls(), f.name) if _has_defaults(cls) else None
            value = from_data(inner, {**(to_data(base) if base is not None else {}), **value})  # type: ignore[arg-type]
        elif inner is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _has_defaults(cls: type) -> bool:
    return all(f.default is not MISSING or f.default_factory is not MISSING for f in dataclasses.fields(cls))


def to_data(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def split_known(cls: type, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the keys ``cls`` has, the others)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}, {k: v for k, v in data.items() if k not in names}


# --- command line --------------------------------------------------------------------------

def flag_name(field: dataclasses.Field, s: Setting, prefix: str = "") -> str:
    return s.flag or "--" + (prefix + field.name).replace("_", "-")


def click_options(cls: type, *, prefix: str = "", dest_prefix: str = "", exclude: tuple[str, ...] = (),
                  help_prefix: Callable[[str], str] = lambda name: "") -> list[Callable]:
    """click options for the fields of a settings dataclass (nested dataclasses flattened as
    ``--outer-inner``), each defaulting to None ("not set here"), typed and ranged as declared;
    values are checked with ``check_value`` when parsed, so a bad flag is a usage error before
    anything loads."""
    import click

    options = []
    for f, tp, s in fields_of(cls):
        inner, _ = _unwrap_optional(tp)
        if f.name in exclude or not s.cli:
            continue
        if dataclasses.is_dataclass(inner):
            options += click_options(inner, prefix=f"{prefix}{f.name}_", dest_prefix=f"{dest_prefix}{f.name}__")  # type: ignore[arg-type]
            continue
        dest = dest_prefix + f.name
        flag = flag_name(f, s, prefix)
        kwargs: dict[str, Any] = {"help": help_prefix(f.name) + s.help + range_text(s), "default": None}
        if inner is bool:
            kwargs.update(is_flag=True, default=None)
        elif s.choices is not None:
            kwargs["type"] = click.Choice(list(s.choices))
        else:
            kwargs["type"] = {int: int, float: float, str: str}[inner]
            kwargs["callback"] = _checked(inner, s)
        options.append(click.option(flag, dest, **kwargs))
    return options


def _checked(tp: Any, s: Setting) -> Callable:
    import click

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        why = broken_rule(tp, s, value)
        if why:
            raise click.BadParameter(why)
        return value

    return callback


def gather(cls: type, values: dict[str, Any], *, dest_prefix: str = "") -> dict[str, Any]:
    """The flags of ``click_options(cls)`` that were given, as nested data for ``from_data``."""
    out: dict[str, Any] = {}
    for f, tp, _ in fields_of(cls):
        inner, _ = _unwrap_optional(tp)
        if dataclasses.is_dataclass(inner):
            nested = gather(inner, values, dest_prefix=f"{dest_prefix}{f.name}__")  # type: ignore[arg-type]
            if nested:
                out[f.name] = nested
        elif values.get(dest_prefix + f.name) is not None:
            out[f.name] = values[dest_prefix + f.name]
    return out
