"""A service that runs all day: warm before it says ready, and freed memory handed back once idle."""

from __future__ import annotations

import os
import threading
import time

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
    """Records where it is warmed up; fails when told to."""

    def __init__(self, fail: bool = False):
        self.fail, self.thread = fail, None

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
    worker = RenderWorker(editor, Scheduler(), ctx, "inproc://warm-test", b"k", max_region_pixels=1, warm_up=True)
    worker.start()
    assert worker.warmed.wait(10)
    assert editor.thread == worker.name == "anycost-render" and worker.warm_up_s == 0.25
    worker.stop_event.set()
    worker.join(10)
    failing = RenderWorker(_Editor(fail=True), Scheduler(), ctx, "inproc://warm-test-2", b"k", max_region_pixels=1,
                           warm_up=True)
    failing.start()
    assert failing.warmed.wait(10)
    failing.join(10)
    assert isinstance(failing.warm_up_error, RuntimeError) and not failing.is_alive()
