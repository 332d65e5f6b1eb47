"""The ``anycost`` command. Each subcommand lives in ``anycost.commands.<name>`` and exposes
``register(subparsers)``; this module only wires them together."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import AnycostError

# Subcommand modules, in the order ``anycost --help`` lists them.
COMMAND_MODULES = [
    "generate",
    "models",
    "edit",
    "train",
    "distill",
    "adopt",
    "data",
    "train_encoder",
    "train_autoencoder",
    "train_classifier",
    "fit_directions",
    "fit_domain",
    "fit_framing",
    "tune_projection",
    "directions",
    "search",
    "serve",
    "client",
    "install",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anycost", description="Anycost GAN face editing backend.")
    parser.add_argument("--version", action="version", version=f"anycost {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"anycost.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AnycostError as e:
        print(f"anycost: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("anycost: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
