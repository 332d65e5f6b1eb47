"""Command-line flags made from a settings dataclass, so every default is written once (in the dataclass).

A field ``batch_size: int`` becomes ``--batch-size``; its ``metadata["help"]`` is the help text, to
which the default is appended; ``metadata["choices"]`` restricts the values. Booleans get
``--flag/--no-flag``; lists of numbers are comma-separated. Flags default to None, so what the user
set can be told apart from defaults (a resumed run keeps its own settings unless a flag overrides them).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

from ..errors import InputError

T = TypeVar("T")


def _list_of(kind: type, name: str):
    def parse(text: str) -> list:
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name} takes comma-separated {kind.__name__}s, got {text!r}") from None
    return parse


def add_config_flags(p: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        help_text = f"{f.metadata.get('help', '')} (default: {shown})".strip()
        kw: dict[str, Any] = {"default": None, "help": help_text, "dest": f.name}
        if "choices" in f.metadata:
            kw["choices"] = list(f.metadata["choices"])
        if kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif typing.get_origin(kind) is list:
            (item,) = typing.get_args(kind)
            p.add_argument(flag, type=_list_of(item, f.name), metavar="A,B,…", **kw)
        else:
            p.add_argument(flag, type=kind, **kw)


def config_from_flags(cls: type[T], args: argparse.Namespace, base: dict | None = None) -> T:
    """``cls`` from ``base`` (e.g. a resumed run's settings) with every flag the user set on top."""
    values = dict(base or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise InputError(f"unknown settings {sorted(unknown)}")
    for name in names:
        v = getattr(args, name, None)
        if v is not None:
            values[name] = v
    return cls(**values)
