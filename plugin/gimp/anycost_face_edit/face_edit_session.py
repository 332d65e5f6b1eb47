"""One non-interactive edit: reach the backend, send the region, commit the sliders, return the pixels.

Each call is its own process: it reaches the backend by ``anycost_client.oneshot`` (the running one, else
the configured command started and left running for the next call), under GIMP's names. No GIMP imports:
the caller passes a ``progress(text, fraction)`` callback and gets bytes back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from face_edit_options import EditOptions

from anycost_client.client import GONE, BackendError
from anycost_client.oneshot import BackendUnavailable, connect_backend, served_model
from anycost_client.protocol import E_INPUT
from anycost_client.regions import Region

HOST = "gimp"  # names the connection and log files of a backend the plug-in starts
CLIENT_NAME = "gimp-plugin"

Progress = Callable[[str, "float | None"], None]

_STAGES = {"align": "Finding the face", "encode": "Encoding the face", "refine": "Refining the projection"}


class EditError(Exception):
    """The edit could not be made; the message is for people."""


class ArgumentError(EditError):
    """An argument the backend's model cannot take (an unknown slider, a value out of its range, a cost it
    does not render at): the caller's mistake, refused by the backend (``bad_input``) with a message
    naming the slider and its range, or the costs it takes."""


@contextmanager
def _refused_arguments() -> Iterator[None]:
    """The backend's ``bad_input`` to the call's sliders or cost, as ``ArgumentError`` with its message."""
    try:
        yield
    except BackendError as e:
        if e.code == E_INPUT:
            raise ArgumentError(e.message) from None
        raise


def progress_text(stage: str | None, step: int | None, steps: int | None) -> tuple[str, float | None]:
    """What to show for a backend ``progress`` message: a sentence and a fraction (None: unknown)."""
    label = _STAGES.get(stage or "", "Working")
    if stage == "refine" and steps:
        return f"{label} ({step or 0}/{steps})…", (step or 0) / steps
    return f"{label}…", None


def edit_region(region: Region, opts: EditOptions, progress: Progress, *,
                timeout: float = 300.0) -> tuple[bytes, str | None]:
    """The region's pixels after the edit (RGBA8, region-sized, pasted back by the backend) and the
    backend's notice about the face alignment (None when the face was found)."""
    progress("Connecting to the Anycost backend…", None)
    try:
        client = connect_backend(HOST, CLIENT_NAME, model=opts.model, timeout=timeout)
    except BackendUnavailable as e:
        raise EditError(str(e)) from None
    try:
        if "check" in (client.welcome.get("capabilities") or []):  # at once, before the region is sent
            with _refused_arguments():
                client.check(opts.sliders, opts.cost)

        def on_progress(msg) -> None:
            progress(*progress_text(msg.get("stage"), msg.get("step"), msg.get("steps")))

        progress("Sending the region…", None)
        # the model was checked on connecting; the backend checks its own name again
        model = served_model(client.welcome) if opts.model else None
        session = client.open(region.rgba, region.width, region.height, mask=region.mask, model=model,
                              refine_steps=opts.refine_steps, progress=on_progress)
        try:
            progress("Rendering the result…", None)
            with _refused_arguments():  # an older backend checks them only here
                result = session.commit(cost=opts.cost, **opts.sliders)
        finally:
            session.close()
        if (result.width, result.height) != (region.width, region.height):
            raise EditError(f"the backend returned a {result.width}×{result.height} result for a "
                            f"{region.width}×{region.height} region")
        return result.rgba, session.notice
    except BackendError as e:
        if e.code == GONE:  # the backend died (or went silent) while this call waited
            raise EditError(e.message) from None
        if e.code == "timeout":
            raise EditError(f"the backend did not answer: {e.message}") from None
        raise EditError(f"the backend refused the edit: {e.message} [{e.code}]") from None
    finally:
        client.close()
