"""What the user is told, plainly, about a model before they rely on it.

One wording for every place the user may be (``anycost edit``, ``anycost models``, the service's
ready message, the Krita and GIMP dialogs), so the same fact never reads two ways.
"""

from __future__ import annotations

UNTRAINED_SUB_GENERATORS = (
    "this model is a plain StyleGAN2: its sub-generators are not trained for consistency, so previews are "
    "approximate (its intermediate-resolution images) until it is distilled with `anycost distill`")


def sub_generators_trained(info: dict, space_kind: str) -> bool:
    """False for a plain StyleGAN2 (full width only) that has not been distilled."""
    return space_kind != "full" or bool(info.get("distilled"))


NO_ENCODER = ("this model has no encoder: faces are projected by optimisation alone, within the projection's step "
              "and time budget, so the first preview is the average face and projection is slower "
              "(`anycost train-encoder` or `anycost adopt` adds one)")


def model_notices(info: dict, space_kind: str, has_encoder: bool = True) -> list[str]:
    """Sentences about a model the user should read before editing with it."""
    notes = []
    if not sub_generators_trained(info, space_kind):
        notes.append(UNTRAINED_SUB_GENERATORS)
    if not has_encoder:
        notes.append(NO_ENCODER)
    return notes
