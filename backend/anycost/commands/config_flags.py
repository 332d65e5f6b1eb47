"""Command-line flags made from a settings dataclass, so every default is written once (in the dataclass).

A field ``batch_size: int`` becomes ``--batch-size``; its ``metadata["help"]`` is the help text, to
which the default is appended. Fields declared with ``anycost.settings_field.setting`` may name their
flag, aliases, choices, metavar, help section or exclusive group there (see ``FLAG_KEYS``). Booleans
get ``--flag/--no-flag``; lists and tuples are comma-separated; ``X | None`` takes an X. Flags default
to None, so what the user set can be told apart from defaults (a resumed run keeps its own settings
unless a flag overrides them).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..errors import InputError
from ..settings_field import FLAG_KEYS

T = TypeVar("T")

# Namespace entry recording, per settings class, the fields that add_config_flags made flags.
_REGISTERED = "_config_flags"


def _key(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _sequence(item: type, flag: str, make: type, count: int | None) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            values = make(item(x.strip()) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes comma-separated {item.__name__}s, got {text!r}") from None
        if count is not None and len(values) != count:
            raise argparse.ArgumentTypeError(f"{flag} takes {count} comma-separated values, got {text!r}")
        return values
    return parse


def _value_type(kind: Any, flag: str) -> tuple[Callable[[str], Any], str | None]:
    """(the argparse ``type``, a metavar or None) for a field's annotation."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(inner) == 1:
            return _value_type(inner[0], flag)
    elif origin is list:
        (item,) = typing.get_args(kind)
        return _sequence(item, flag, list, None), "A,B,…"
    elif origin is tuple:
        items = typing.get_args(kind)
        if len(items) == 2 and items[1] is Ellipsis:
            return _sequence(items[0], flag, tuple, None), "A,B,…"
        if len(set(items)) == 1:
            return _sequence(items[0], flag, tuple, len(items)), ",".join("ABCDEFGH"[:len(items)])
    elif kind in (int, float, str):
        return kind, None
    raise TypeError(f"{flag}: no flag for a setting of type {kind}")


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def _help(f: dataclasses.Field) -> str:
    text = f.metadata.get("help", "")
    shown = f.metadata.get("default_text")
    if shown is None and not f.metadata.get("required"):
        default = _default(f)
        if isinstance(default, (list, tuple)):
            shown = ",".join(map(str, default))
        elif default is not None and default != "":
            shown = str(default)
    if shown is not None:
        text = f"{text} (default: {shown})".strip()
    return text.replace("%", "%%")  # argparse formats help texts with %


def add_config_flags(p: argparse.ArgumentParser, cls: type, *, skip: Iterable[str] = (),
                     groups: dict[str, Any] | None = None) -> dict[str, Any]:
    """Add a flag for every field of ``cls`` but those in ``skip``.

    ``groups`` (help sections by title) is where fields with a ``group`` go; sections not in it are
    made and added to it. Returns it, so a command can list its own flags beside the settings."""
    skip = set(skip)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    if skip - names:
        raise TypeError(f"{cls.__name__} has no settings {sorted(skip - names)}")
    groups = {} if groups is None else groups
    exclusive: dict[str, Any] = {}
    made = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        meta = f.metadata
        if set(meta) - FLAG_KEYS:
            raise TypeError(f"{cls.__name__}.{f.name}: unknown flag options {sorted(set(meta) - FLAG_KEYS)}")
        target: Any = p
        if "group" in meta:
            if meta["group"] not in groups:
                groups[meta["group"]] = p.add_argument_group(meta["group"])
            target = groups[meta["group"]]
        if "exclusive" in meta:
            if meta["exclusive"] not in exclusive:
                exclusive[meta["exclusive"]] = target.add_mutually_exclusive_group()
            target = exclusive[meta["exclusive"]]
        flag = meta.get("flag", "--" + f.name.replace("_", "-"))
        kw: dict[str, Any] = {"default": None, "help": _help(f), "dest": f.name}
        if "choices" in meta:
            kw["choices"] = list(meta["choices"])
        if meta.get("required"):
            kw["required"] = True
        if hints[f.name] is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"], metavar = _value_type(hints[f.name], flag)
            if "metavar" in meta or metavar:
                kw["metavar"] = meta.get("metavar", metavar)
        target.add_argument(flag, *meta.get("aliases", ()), **kw)
        made.append(f.name)
    registered = dict(p.get_default(_REGISTERED) or {})
    registered[_key(cls)] = tuple(made)
    p.set_defaults(**{_REGISTERED: registered})
    return groups


def flags_given(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The settings of ``cls`` the user set with a flag (by field name)."""
    registered = getattr(args, _REGISTERED, None) or {}
    names = registered.get(_key(cls))
    if names is None:  # a namespace made by hand: every field it has
        names = [f.name for f in dataclasses.fields(cls)]
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def config_from_flags(cls: type[T], args: argparse.Namespace, base: dict | None = None, **fixed: Any) -> T:
    """``cls`` from ``base`` (e.g. a resumed run's settings) with every flag the user set on top.

    ``fixed`` are settings the command decides (not flags); they win over both."""
    values = dict(base or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise InputError(f"unknown settings {sorted(unknown)}")
    values.update(flags_given(cls, args))
    values.update(fixed)
    return cls(**values)
