"""Whether a Python environment from the shell that started Krita leaks into Krita's own Python.

Krita started from a shell where a virtual environment is activated runs its embedded Python inside
that environment (Debian's Krita 5.1.5 takes its prefix from the first ``python3`` on ``PATH``, checked),
which lacks Krita's own packages: PyQt5 cannot be imported and no Python plugin loads. ``PYTHONHOME`` or
a foreign ``PYTHONPATH`` do the same. This module names what it finds, for the messages of a plugin
whose imports failed. Standard library only.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping

VARIABLES = ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH")


def _foreign_path(value: str) -> str:
    """``PYTHONPATH`` less the folders Krita puts there itself (its own ``krita-python-libs`` and the like)."""
    return os.pathsep.join(p for p in value.split(os.pathsep) if p and "krita" not in p.lower())


def python_environment_note(environ: Mapping[str, str] | None = None, prefix: str | None = None,
                            base_prefix: str | None = None) -> str:
    """A sentence naming the variables (``VIRTUAL_ENV``, ``PYTHONHOME``, ``PYTHONPATH`` less Krita's own
    folders, a ``PATH`` whose first ``python3`` is a virtual environment's) and the virtual environment
    Krita's Python runs in, with what to do; empty when none."""
    env = os.environ if environ is None else environ
    prefix = sys.prefix if prefix is None else prefix
    base = getattr(sys, "base_prefix", prefix) if base_prefix is None else base_prefix
    found = []
    for name in VARIABLES:
        value = env.get(name) or ""
        if name == "PYTHONPATH":
            value = _foreign_path(value)
        if value:
            found.append(f"{name}={value}")
    exe = shutil.which("python3", path=env.get("PATH", ""))
    if exe and os.path.isfile(os.path.join(os.path.dirname(os.path.dirname(exe)), "pyvenv.cfg")):
        found.append(f"PATH starting with a virtual environment's python3 ({exe})")
    in_venv = os.path.normcase(os.path.abspath(prefix)) != os.path.normcase(os.path.abspath(base))
    if not found and not in_venv:
        return ""
    what = []
    if found:
        what.append(f"Krita was started with {', '.join(found)}")
    if in_venv:
        what.append(f"its Python runs in the virtual environment {prefix}")
    return (f"{'; '.join(what)}. A Python environment activated in the shell that starts Krita takes the place "
            "of Krita's own Python packages (PyQt among them). Start Krita from a shell without it (run "
            "'deactivate' first, or unset these variables) or from the desktop menu.")


def report_import_failure(error: ImportError, stream=None) -> str:
    """Krita's own ``krita`` module could not be imported (no PyQt, no window to show a message in): say so
    on Krita's standard error, with the environment that causes it. Returns what was written."""
    note = python_environment_note()
    text = (f"Anycost Face Edit: Krita's Python cannot import its own modules ({error}); no Python plugin can "
            f"load.{' ' + note if note else ''}")
    print(text, file=stream or sys.stderr)
    return text
