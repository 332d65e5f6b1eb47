"""Errors the user can act on. The CLI prints their message and exits non-zero."""

from __future__ import annotations


class AnycostError(Exception):
    """Base class: a clear, human sentence about what went wrong and what to do."""


class ModelFileError(AnycostError):
    """A model file is missing, unreadable, unsafe, or does not fit the expected architecture."""


class ModelNotFoundError(ModelFileError):
    """A model name is not available locally (and could not be downloaded)."""


class RenderCancelled(Exception):
    """A render was abandoned between layers because its result is no longer wanted (a newer edit came)."""


class InputError(AnycostError):
    """Bad user input: an image, mask, latent file or option that cannot be used."""
