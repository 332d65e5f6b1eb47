"""A preview nobody waits for is abandoned between layers: renders take a cancel check, and the
scheduler cancels the preview in flight when a newer edit for the same session arrives."""

from __future__ import annotations

import time

import pytest
import torch
from model_support import tiny_generator

from anycost.errors import RenderCancelled
from anycost.service.sessions import EditRequest, OpenRequest, Scheduler, Session

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_a_render_stops_between_layers_when_asked(impl):
    G = tiny_generator(res=32)
    w = G.styles_from_seed(1)
    asked = []

    def cancel_at(k):
        def check():
            asked.append(1)
            return len(asked) >= k
        return check

    with torch.no_grad():
        full = G.synthesize(w, impl=impl, cancel=lambda: False)
        assert torch.equal(full, G.synthesize(w, impl=impl))  # a check that says no changes nothing
        with pytest.raises(RenderCancelled):
            G.synthesize(w, impl=impl, cancel=cancel_at(2))
    assert len(asked) == 2  # asked again and again, stopped at once when told


def _session(sched: Scheduler) -> Session:
    s = Session(sched.new_sid(), b"peer", OpenRequest(1, None, None, {}))
    s.edit = object()  # ready for previews
    sched.add(s)
    return s


def test_a_newer_edit_abandons_the_preview_in_flight_but_never_a_commit():
    from anycost.service.sessions import CommitRequest

    sched = Scheduler()
    s = _session(sched)
    s.last_preview_at, s.last_render_s = time.monotonic(), 0.05  # a preview was just shown
    a = EditRequest(1, 1, {"x": 0.1}, "preview")
    sched.submit_edit(s, a)
    unit = sched.take(timeout=0)
    assert unit.request is a and s.running_edit is a and not a.cancel.is_set()
    b = EditRequest(2, 2, {"x": 0.2}, "preview")
    sched.submit_edit(s, b)
    assert a.cancel.is_set() and not b.cancel.is_set() and s.pending_edit is b
    sched.finish_preview(s, a)
    assert s.running_edit is None
    assert sched.take(timeout=0).request is b
    sched.finish_preview(s, b)
    # a commit in flight is not cancelled by the preview machinery (only by a newer commit or edit, which
    # the client is told of), and finishing an old preview never clears a newer one
    c = CommitRequest(3, 3, {"x": 0.3})
    sched.submit_commit(s, c)
    assert sched.take(timeout=0).request is c
    sched.finish_preview(s, a)
    assert s.running_commit is c


def _abandoned(sched: Scheduler, s: Session, req: EditRequest) -> None:
    """What the worker does when a render stops for a newer edit."""
    assert req.cancel.is_set()
    s.previews_abandoned += 1
    s.abandoned_since_shown += 1
    sched.finish_preview(s, req)


def _shown(sched: Scheduler, s: Session, req: EditRequest, render_s: float) -> None:
    """What the worker does when it sends a preview (a draft or a full one)."""
    s.last_preview_at, s.abandoned_since_shown = time.monotonic(), 0
    if not req.draft:
        s.last_render_s = render_s
    sched.finish_preview(s, req, drafted=req.draft)


def test_a_drag_still_updates_the_canvas_with_drafts():
    """During a drag faster than the renderer every full preview in flight is abandoned; once none has been
    shown for min_preview_interval (or one full render, if longer), the newest edit renders as a draft,
    which is never abandoned: the canvas keeps updating, and the hand's last edit never waits for a full
    render in flight."""
    sched = Scheduler(min_preview_interval=0.25)
    s = _session(sched)
    a = EditRequest(1, 1, {"x": 0.1}, "preview")
    sched.submit_edit(s, a)
    assert not sched.take(timeout=0).request.draft, "a single edit gets its full preview"
    sched.submit_edit(s, EditRequest(2, 2, {"x": 0.2}, "preview"))
    _abandoned(sched, s, a)  # nothing shown yet, and previews are being abandoned: a draft is due
    b = sched.take(timeout=0).request
    assert b.seq == 2 and b.draft
    sched.submit_edit(s, EditRequest(3, 3, {"x": 0.3}, "preview"))
    assert not b.cancel.is_set(), "a draft in flight finishes"
    _shown(sched, s, b, 0.0)
    assert s.pending_edit.seq == 3, "a newer edit is waiting: no full preview of the draft's edit"
    c = sched.take(timeout=0).request
    assert not c.draft, "a draft was shown a moment ago"
    _shown(sched, s, c, 0.1)
    # full renders take 0.1 s: drafts are due every 0.25 s (the floor, longer than one render)
    d_req = EditRequest(4, 4, {"x": 0.4}, "preview")
    sched.submit_edit(s, d_req)
    d = sched.take(timeout=0).request
    sched.submit_edit(s, EditRequest(5, 5, {"x": 0.5}, "preview"))
    _abandoned(sched, s, d)
    s.last_preview_at = time.monotonic() - 0.15
    e = sched.take(timeout=0).request
    assert not e.draft, "0.15 s since the last preview: not due yet"
    sched.submit_edit(s, EditRequest(6, 6, {"x": 0.6}, "preview"))
    _abandoned(sched, s, e)
    s.last_preview_at = time.monotonic() - 0.3
    f = sched.take(timeout=0).request
    assert f.draft and f.seq == 6
    _shown(sched, s, f, 0.0)
    # the hand rested on edit 6, answered by a draft: its full preview renders next, abandonable again
    g = sched.take(timeout=0).request
    assert (g.seq, g.sliders, g.draft) == (6, {"x": 0.6}, False) and g is not f
    sched.submit_edit(s, EditRequest(7, 7, {"x": 0.7}, "preview"))
    assert g.cancel.is_set()


def test_slow_renders_space_drafts_by_one_render():
    sched = Scheduler(min_preview_interval=0.05)
    s = _session(sched)
    s.last_render_s, s.abandoned_since_shown = 0.4, 2
    s.last_preview_at = time.monotonic() - 0.3
    assert not sched.draft_due(s), "0.3 s: less than one 0.4 s render since the last preview"
    s.last_preview_at = time.monotonic() - 0.45
    assert sched.draft_due(s)
    s.abandoned_since_shown = 0
    assert not sched.draft_due(s), "nothing abandoned since: the hand is slower than the renderer"


def test_a_nearly_finished_render_is_not_thrown_away():
    """Abandoning a render in its last fifth would save the newer edit less than it throws away."""
    sched = Scheduler()
    s = _session(sched)
    s.last_preview_at, s.last_render_s = time.monotonic(), 0.2
    sched.submit_edit(s, EditRequest(1, 1, {"x": 0.1}, "preview"))
    early = sched.take(timeout=0).request
    sched.submit_edit(s, EditRequest(2, 2, {"x": 0.2}, "preview"))
    assert early.cancel.is_set(), "just started: abandoned for the newer edit"
    sched.finish_preview(s, early)
    late = sched.take(timeout=0).request
    late.started = time.monotonic() - 0.17  # 85 % of a 0.2 s render done
    sched.submit_edit(s, EditRequest(3, 3, {"x": 0.3}, "preview"))
    assert not late.cancel.is_set(), "nearly done: it finishes, and the newer edit renders next"
    assert s.pending_edit.seq == 3
    sched.finish_preview(s, late)
    s.last_render_s = 0.004  # a render shorter than anyone would notice saving: never abandoned
    quick = sched.take(timeout=0).request
    sched.submit_edit(s, EditRequest(4, 4, {"x": 0.4}, "preview"))
    assert not quick.cancel.is_set()
