"""``setting``: a field of a settings dataclass that carries its own command-line help.

Torch-free, so training and search settings can declare their flags without importing the command
line; ``anycost.commands.config_flags`` turns such fields into flags.
"""

from __future__ import annotations

import copy
from dataclasses import field
from typing import Any

# What a field's metadata may say about its flag (read by commands.config_flags):
FLAG_KEYS = frozenset({
    "help",          # the help text; the default is appended
    "flag",          # the option's name when it is not --field-name (e.g. "--real" for real_folder)
    "aliases",       # further names of the same option
    "choices",       # the values allowed
    "metavar",       # the placeholder shown in --help
    "group",         # the --help section it is listed in
    "exclusive",     # fields with the same tag are mutually exclusive flags
    "required",      # the command needs the flag even though the field has a default
    "default_text",  # what --help says the default is, where the value alone would mislead
})


def setting(default: Any, help: str = "", **flag: Any) -> Any:
    """A dataclass field with ``default``, its flag's ``help`` and flag options (keys of ``FLAG_KEYS``)."""
    unknown = set(flag) - FLAG_KEYS
    if unknown:
        raise TypeError(f"unknown flag options {sorted(unknown)}")
    meta = {"help": help, **flag}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: copy.copy(default), metadata=meta)
    return field(default=default, metadata=meta)
