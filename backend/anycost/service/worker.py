"""The render worker: one thread per device doing projection, previews and full renders.

It takes one unit of work at a time from the ``Scheduler`` and hands its replies to the socket
thread through an inproc PUSH socket (ZeroMQ sockets are not shared between threads).

Pixels going back are always pasted back into the region (region coordinates, the channel order
the client sent) and cropped to the bounding box of the pixels that differ from the region:
``box`` = [x, y, w, h]. Pixels outside the box are the region's own.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Iterator

import numpy as np
import zmq

from anycost_client.protocol import (
    E_INPUT,
    E_INTERNAL,
    E_MODEL,
    Frame,
    Message,
    encode,
    error_message,
)

from ..editing.paste import paste_bounds
from ..errors import AnycostError, ModelFileError, RenderCancelled
from .log import log
from .preview_search import recheck_preview
from .sessions import CommitRequest, EditRequest, Scheduler, Session, Task, Unit

PROGRESS_FRAME_INTERVAL = 0.25  # seconds between refinement preview frames


def cost_spec(cost, G) -> str:
    """A cost as text that ``parse_cost`` reads back: 'RES:RATIO' or 'RES:flexible'."""
    res = cost.res or G.resolution
    if cost.channels is None:
        return f"{res}:1"
    if isinstance(cost.channels, float):
        return f"{res}:{cost.channels:g}"
    return f"{res}:flexible"


def preview_fields(editor) -> dict:
    """How the preview sub-generator was chosen and what it costs here: the ``preview*`` fields of
    the welcome's ``costs`` and of ``ready``'s ``preview_choice`` (docs/protocol.md)."""
    choice = editor.preview_choice()
    d = choice.describe()
    # fits is false when even the cheapest sub-generator misses the budget here (the rule of
    # search/budget.py): preview_ms is then over preview_budget_ms
    return {"preview": cost_spec(choice.cost, editor.generator), "preview_budget_ms": editor.preview_budget_ms,
            "preview_ms": d["measured_ms"], "preview_source": d["source"], "preview_predicted_ms": d["predicted_ms"],
            "preview_psnr": d["psnr"], "preview_flops": d["flops"], "preview_channels": d["channels"],
            "preview_fits": d["fits"], "preview_precision": d["precision"]}


def changed_box(rgba: np.ndarray, original: np.ndarray, within: tuple[int, int, int, int] | None = None
                ) -> tuple[int, int, int, int] | None:
    """[x, y, w, h] of the pixels of ``rgba`` that differ from ``original``; None if none do. ``within``
    (x0, y0, x1, y1, half-open): only there can they differ (the paste-back's bounds), so only there is
    looked (a 1024 px region is compared in a fraction of the time)."""
    x0, y0, x1, y1 = within if within is not None else (0, 0, rgba.shape[1], rgba.shape[0])
    if rgba.shape[2] == 4 and rgba.flags.c_contiguous and original.flags.c_contiguous:
        # one 32-bit compare per pixel instead of four byte compares and a reduction (several times faster)
        diff = rgba.view(np.uint32)[y0:y1, x0:x1, 0] != original.view(np.uint32)[y0:y1, x0:x1, 0]
    else:
        diff = np.any(rgba[y0:y1, x0:x1] != original[y0:y1, x0:x1], axis=2)
    rows = np.flatnonzero(diff.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(diff[rows[0]: rows[-1] + 1].any(axis=0))
    return x0 + int(cols[0]), y0 + int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def rgba_frame(rgba: np.ndarray, channel_order: str) -> Frame:
    if channel_order == "BGRA":
        rgba = rgba[..., [2, 1, 0, 3]]
    h, w = rgba.shape[:2]
    return Frame(np.ascontiguousarray(rgba).tobytes(), w, h, "RGBA8")


def keep_torch_in_render_thread(threads: int | None = None) -> int:
    """Give the calling thread (the service's main, socket thread) one torch thread, so that it never starts
    a team of OpenMP threads, and return how many the render thread takes (``threads``, else torch's
    default). libgomp lets its threads spin for work between parallel regions only while the process has
    no more OpenMP threads than CPUs; each thread that runs a parallel region has a team of its own, so a
    second team (the main thread's, from loading the model) made every team sleep between layers instead,
    and renders in the render thread took about 1.4 times as long (a 256 px preview of the demo: 17.4 ms
    against 12.5 ms in the main thread; 10 ms with the main thread kept off)."""
    import torch

    n = threads or torch.get_num_threads()
    torch.set_num_threads(1)  # per thread with OpenMP: the render thread sets its own
    return n


class RenderWorker(threading.Thread):
    def __init__(self, editor, scheduler: Scheduler, ctx: zmq.Context, out_endpoint: str, key: bytes,
                 *, max_region_pixels: int, on_done: Callable[[Session], None] | None = None,
                 warm_up: bool = False, threads: int | None = None):
        super().__init__(name="anycost-render", daemon=True)
        self.editor = editor
        self.threads = threads  # torch threads of this thread (None: torch's default)
        # Warming up has to happen in this thread: a thread's first render pays for its own thread pool
        # and caches (measured: +0.4 s on the first full 1024 px commit when warmed in another thread).
        self.warm_up_first = warm_up
        self.warmed = threading.Event()
        self.warm_up_s: float | None = None
        self.warm_up_error: BaseException | None = None
        self.scheduler = scheduler
        self.ctx = ctx
        self.out_endpoint = out_endpoint
        self.key = key
        self.max_region_pixels = max_region_pixels
        self.stop_event = threading.Event()
        self.renders = 0
        self.last_active = time.monotonic()  # when the last unit of work ended (idle memory trimming)
        self._push: zmq.Socket | None = None
        self._lock = threading.Lock()  # guards the PUSH socket against the socket thread's 'notify'

    # ------------------------------------------------------------------ plumbing
    def send(self, s: Session, msg: Message) -> None:
        if s.closed:
            return
        msg.session_id = s.sid
        parts = encode(msg, self.key)
        assert self._push is not None
        self._push.send_multipart([s.peer, *parts], copy=False)

    def error(self, s: Session, code: str, text: str, request_id=None, seq: int | None = None,
              fatal: bool = False) -> None:
        m = error_message(code, text, request_id=request_id, session_id=s.sid, fatal=fatal)
        m.seq = seq
        self.send(s, m)

    def run(self) -> None:
        try:
            if self.threads:
                import torch

                torch.set_num_threads(self.threads)
            # The preview choice is timed here, in the thread whose renders it predicts, before any client
            # can ask for it (doing it on the first hello or edit would stall the socket loop).
            self.editor.preview_choice()
            self.editor.draft_cost()
            if self.warm_up_first:
                self.warm_up_s = self.editor.warm_up()
        except BaseException as e:  # the server's start raises it: a model that cannot render stops here
            self.warm_up_error = e
        self.warmed.set()
        if self.warm_up_error is not None:
            return
        self._push = self.ctx.socket(zmq.PUSH)
        self._push.setsockopt(zmq.LINGER, 0)
        self._push.connect(self.out_endpoint)
        try:
            while not self.stop_event.is_set():
                unit = self.scheduler.take(timeout=0.5, stop=self.stop_event)
                if unit is not None:
                    self._run_unit(unit)
        finally:
            self._push.close(0)

    def _run_unit(self, unit: Unit) -> None:
        try:
            if unit.kind == "task":
                self._task(unit.request)
            else:
                self._run(unit)
        finally:
            self.last_active = time.monotonic()

    @staticmethod
    def _task(task: Task) -> None:
        if not task.future.set_running_or_notify_cancel():
            return
        try:
            task.future.set_result(task.fn())
        except BaseException as e:  # the waiting thread gets it; the render thread lives on
            task.future.set_exception(e)

    def _run(self, unit: Unit) -> None:
        s = unit.session
        rid = unit.request.request_id if unit.request is not None else s.open_request.request_id
        seq = getattr(unit.request, "seq", None)
        try:
            if unit.kind == "open":
                assert s.opening is not None
                try:
                    next(s.opening)
                except StopIteration:
                    s.opening = None
                    self.scheduler.wake()
            elif unit.kind == "preview":
                drafted = False
                try:
                    drafted = self._preview(s, unit.request)
                except RenderCancelled:  # a newer edit came meanwhile: it is pending, and renders next
                    s.previews_abandoned += 1
                    s.abandoned_since_shown += 1
                finally:
                    self.scheduler.finish_preview(s, unit.request, drafted=drafted)
            elif unit.kind == "commit":
                try:
                    self._commit(s, unit.request)
                finally:
                    self.scheduler.finish_commit(s, unit.request)
        except AnycostError as e:
            code = E_MODEL if isinstance(e, ModelFileError) else E_INPUT
            self._fail(s, unit, code, str(e), rid, seq)
        except Exception as e:  # the backend lives on; the client gets a sentence and the log the details
            log("error", "render_failed", sid=s.sid, kind=unit.kind, error=repr(e),
                trace=traceback.format_exc(limit=8))
            self._fail(s, unit, E_INTERNAL, f"internal error while rendering ({type(e).__name__}: {e})", rid, seq)

    def _fail(self, s: Session, unit: Unit, code: str, text: str, rid, seq) -> None:
        fatal = unit.kind == "open"  # a session that failed to open is gone
        self.error(s, code, text, rid, seq, fatal=fatal)
        if fatal:
            s.opening = None
            self.scheduler.remove(s.sid)
            log("info", "session_failed", sid=s.sid, code=code)

    # ------------------------------------------------------------------ work
    def open_job(self, s: Session) -> Iterator[None]:
        """Align, encode and refine, yielding after each step so other sessions get their turn."""
        from ..editing.region import Region

        req = s.open_request
        opts = req.options
        ed = self.editor
        rid = req.request_id
        f, m = req.frame, req.mask
        region = Region.from_rgba_bytes(f.data, f.width, f.height, stride=f.stride, channel_order=s.channel_order,
                                        mask_bytes=None if m is None else m.data,
                                        mask_stride=None if m is None else m.stride,
                                        max_pixels=self.max_region_pixels)
        self.send(s, Message("progress", {"stage": "align"}, request_id=rid))
        yield
        es = ed.open(region, align=bool(opts.get("align", True)))
        self.send(s, Message("progress", {"stage": "align", "notice": es.notice}, request_id=rid))
        steps = int(opts.get("refine_steps", 0))
        budget = opts.get("time_budget")
        last_frame = 0.0
        for step in es.iter_project(steps, time_budget=budget, cancel=s.refine_cancel, report_every=1):
            if s.edit is None:
                s.edit = es  # previews may run between refinement steps from here on
            if s.closed:
                return
            stage = "encode" if step.step == 0 else "refine"
            now = time.monotonic()
            fields = {"stage": stage, "step": step.step, "steps": steps, "psnr": round(step.psnr, 3)}
            frames = []
            # In delta mode the canvas keeps the original until an edit is made: no progress frames.
            show = self._blend(s) == "replace"
            if show and (step.step == 0 or step.final or now - last_frame >= PROGRESS_FRAME_INTERVAL):
                rgba = es.composite(step.image, reference=None, color_match=False, blend="replace")
                box = changed_box(rgba, region.rgba)
                if box is not None:
                    x, y, w, h = box
                    frames = [rgba_frame(rgba[y: y + h, x: x + w], s.channel_order)]
                    fields["box"] = list(box)
                last_frame = now
            self.send(s, Message("progress", fields, frames, request_id=rid))
            yield
        if s.closed:
            return
        # a search run meanwhile ('anycost search') takes effect here when it gives a better preview
        after, changed = recheck_preview(ed)
        if changed:
            log("info", "preview_changed", reason="search table updated", preview_cost=after.cost.label(),
                **after.describe())
        # so the first preview (and the first draft of a drag) costs one render
        ref = es.reference(ed.preview_cost(), dtype=ed.preview_dtype)
        es.reference(ed.draft_cost(), dtype=ed.preview_dtype)
        # and one paste of the unedited render: the paste's grid and blend weight are kept for the session,
        # and the heap holds the buffers a region this size needs (a first 1024 px paste cost 5 ms more)
        es.composite(ref, reference=ref, blend=self._blend(s))
        yield
        if s.closed:
            return
        s.edit = es
        s.ready = True
        dirs = ed.directions.slider_specs()
        last = es.last_projection
        self.send(s, Message("ready", {
            "directions": dirs, "notice": es.notice, "method": es.alignment.method,
            # what to tell the user about this face (no face found, beyond the model) and whether Apply asks
            "notices": es.notices, "confirm_apply": es.needs_confirmation,
            "cost": cost_spec(ed.preview_cost(), ed.generator),
            "preview_choice": preview_fields(ed),  # it may have changed since the welcome
        }, request_id=rid))
        log("info", "session_ready", sid=s.sid, refine_steps=0 if last is None else last.step,
            psnr=None if last is None else round(last.psnr, 2))

    def _blend(self, s: Session) -> str:
        return str(s.open_request.options.get("blend") or self.editor.blend)

    def _render_pasted(self, s: Session, cost, cancel: Callable[[], bool] | None = None, dtype=None
                       ) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
        es = s.edit
        img = es.render(cost, cancel=cancel, dtype=dtype)
        reference = es.reference(cost, dtype=dtype)
        if cancel is not None and cancel():
            raise RenderCancelled
        rgba = es.composite(img, reference=reference, blend=self._blend(s), cancel=cancel)
        if cancel is not None and cancel():
            raise RenderCancelled
        return rgba, changed_box(rgba, es.region.rgba, paste_bounds(es.region, es.alignment))

    def _preview(self, s: Session, req: EditRequest) -> bool:
        """Render and send the preview of ``req``; True when it was a draft (see ``sessions``)."""
        es = s.edit
        t0 = time.perf_counter()
        es.set_sliders(req.sliders, replace=True)
        cost = self.editor.cost(req.quality or "preview")
        draft = False
        # a client that did not open the session with 'drafts' gets the full preview in a draft's place
        if req.draft and s.open_request.options.get("drafts") is True:
            lower = self.editor.draft_cost(cost)
            draft, cost = lower != cost, lower
        # a draft (or what renders in its place) is never abandoned: it is what a fast drag shows
        cancel = None if req.draft else req.cancel.is_set
        rgba, box = self._render_pasted(s, cost, cancel, self.editor.preview_dtype)
        frames = []
        if box is not None:
            x, y, w, h = box
            frames = [rgba_frame(rgba[y: y + h, x: x + w], s.channel_order)]
        ms = (time.perf_counter() - t0) * 1000
        s.previews_rendered += 1
        s.last_preview_at, s.abandoned_since_shown = time.monotonic(), 0
        if draft:
            s.drafts += 1
        else:
            s.last_render_s = ms / 1000
        self.renders += 1
        fields = {"cost": cost_spec(cost, self.editor.generator), "render_ms": round(ms, 3),
                  "box": list(box) if box else None}
        if draft:
            fields["draft"] = True
        self.send(s, Message("preview", fields, frames, request_id=req.request_id, seq=req.seq))
        return draft

    def _commit(self, s: Session, req: CommitRequest) -> None:
        es = s.edit
        if req.cancel.is_set():
            return
        t0 = time.perf_counter()
        es.set_sliders(req.sliders, replace=True)
        cost = self.editor.cost(req.cost)
        rgba, box = self._render_pasted(s, cost, dtype=self.editor.commit_dtype)
        if req.cancel.is_set():  # superseded while rendering: the socket thread already answered
            return
        ms = (time.perf_counter() - t0) * 1000
        self.renders += 1
        self.send(s, Message("result", {"render_ms": round(ms, 3), "box": list(box) if box else None,
                                        "cost": cost_spec(cost, self.editor.generator)},
                             [rgba_frame(rgba, s.channel_order)], request_id=req.request_id, seq=req.seq))
        self.send(s, Message("done", {"what": "commit"}, request_id=req.request_id, seq=req.seq))
        log("info", "commit", sid=s.sid, render_ms=round(ms, 1))

