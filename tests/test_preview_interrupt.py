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


def test_a_drag_still_updates_the_canvas():
    """A render in flight is kept when the canvas has gone too long without a preview: during a drag faster
    than the renderer, previews still arrive (at least every min_preview_interval), not only at the end."""
    sched = Scheduler(min_preview_interval=0.25)
    s = _session(sched)
    a = EditRequest(1, 1, {"x": 0.1}, "preview")
    sched.submit_edit(s, a)
    sched.take(timeout=0)
    sched.submit_edit(s, EditRequest(2, 2, {"x": 0.2}, "preview"))
    assert not a.cancel.is_set()  # no preview shown yet: the first one always finishes
    sched.finish_preview(s, a)
    s.last_preview_at, s.last_render_s = time.monotonic(), 0.1
    b = sched.take(timeout=0).request
    sched.submit_edit(s, EditRequest(3, 3, {"x": 0.3}, "preview"))
    assert b.cancel.is_set()  # a preview was shown a moment ago: the stale render is abandoned
    sched.finish_preview(s, b)
    # renders take 0.1 s, so the canvas is due a preview every 3 renders (0.3 s, more than the 0.25 s floor)
    s.last_preview_at = time.monotonic() - 0.15
    c = sched.take(timeout=0).request
    sched.submit_edit(s, EditRequest(4, 4, {"x": 0.4}, "preview"))
    assert c.cancel.is_set(), "0.15 s + 0.1 s of render: not due yet"
    sched.finish_preview(s, c)
    s.last_preview_at = time.monotonic() - 0.22  # 0.22 s ago, and this render ends after 0.32 s: due
    d = sched.take(timeout=0).request
    sched.submit_edit(s, EditRequest(5, 5, {"x": 0.5}, "preview"))
    assert not d.cancel.is_set()


def test_a_nearly_finished_render_is_not_thrown_away():
    """Abandoning a render in its last fifth would save the newer edit less than it throws away."""
    sched = Scheduler(min_preview_interval=10.0)  # the canvas is never overdue here: only progress counts
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
    s.last_render_s = 0.012  # a render shorter than anyone would notice saving: never abandoned
    quick = sched.take(timeout=0).request
    sched.submit_edit(s, EditRequest(4, 4, {"x": 0.4}, "preview"))
    assert not quick.cancel.is_set()
