"""Subcommands of the ``anycost`` CLI, one module each (see ``anycost.cli``)."""
