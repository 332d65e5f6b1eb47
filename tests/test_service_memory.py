"""A service that runs all day: warm before it says ready, and freed memory handed back once idle."""

from __future__ import annotations

import os
import threading
import time

import pytest
from service_support import Backend

from anycost.registry import resolve_model
from anycost_client import Client


def test_warm_before_ready_and_memory_trimmed_when_idle(tmp_path):
    b = Backend(tmp_path, resolve_model("anycost-demo"), None, "--idle-trim", "1")
    try:
        ready = b.events("model_ready")[0]
        assert ready["warm_up_s"] > 0  # the warm-up ran before the service listened
        assert ready["precision_decision"]["precision"] in ("fp32", "bf16") and ready["precision_decision"]["reason"]
        rgba = os.urandom(96 * 96 * 4)
        with Client.connect(b.conn) as client, client.open(rgba, 96, 96, align=False) as s:
            assert client.welcome["costs"]["preview_precision"] == ready["precision"]
            s.edit(smile=0.5)
        deadline = time.monotonic() + 30
        while not b.events("memory_trimmed") and time.monotonic() < deadline:
            time.sleep(0.2)
        trims = b.events("memory_trimmed")
        assert trims and trims[0]["rss_mb_before"] > 0
        time.sleep(2.5)
        assert len(b.events("memory_trimmed")) == len(trims)  # once per idle spell, not every sweep
    finally:
        b.stop()


class _Editor:
    """Records where (in which thread, with how many torch threads) it is timed and warmed up; fails when
    told to."""

    def __init__(self, fail: bool = False):
        self.fail, self.thread, self.timed = fail, None, []

    def preview_choice(self) -> None:
        import torch

        self.timed.append(("preview", threading.current_thread().name, torch.get_num_threads()))

    def draft_cost(self) -> None:
        self.timed.append(("draft", threading.current_thread().name))

    def warm_up(self) -> float:
        self.thread = threading.current_thread().name
        if self.fail:
            raise RuntimeError("cannot render")
        return 0.25


def test_the_render_thread_warms_itself_up():
    """A thread's first render pays for its own thread pool and allocator state, so the warm-up must run in
    the thread that renders; a warm-up that fails reaches whoever started the worker."""
    import zmq

    from anycost.service.sessions import Scheduler
    from anycost.service.worker import RenderWorker

    ctx = zmq.Context.instance()
    editor = _Editor()
    scheduler = Scheduler()
    worker = RenderWorker(editor, scheduler, ctx, "inproc://warm-test", b"k", max_region_pixels=1, warm_up=True,
                          threads=1)
    worker.start()
    assert worker.warmed.wait(10)
    assert editor.thread == worker.name == "anycost-render" and worker.warm_up_s == 0.25
    # the preview choice is timed in the render thread too, with the render thread's own torch threads
    assert editor.timed == [("preview", "anycost-render", 1), ("draft", "anycost-render")]
    # torch work another thread needs done (re-choosing the preview after a search) runs there as well
    assert scheduler.submit_task(lambda: threading.current_thread().name).result(10) == "anycost-render"
    with pytest.raises(ZeroDivisionError):
        scheduler.submit_task(lambda: 1 / 0).result(10)
    assert worker.is_alive(), "a failing task reaches its caller, not the render thread"
    worker.stop_event.set()
    worker.join(10)
    failing = RenderWorker(_Editor(fail=True), Scheduler(), ctx, "inproc://warm-test-2", b"k", max_region_pixels=1,
                           warm_up=True)
    failing.start()
    assert failing.warmed.wait(10)
    failing.join(10)
    assert isinstance(failing.warm_up_error, RuntimeError) and not failing.is_alive()
