# A Krita plugin installed only into the temporary profile of tests/test_krita_e2e.py. Once the window
# exists it drives the real Anycost Face Edit plugin as a user would: opens the test image, selects the
# face, triggers Filter ▸ Anycost Face Edit…, moves the dialog's sliders, waits for previews on the
# canvas, presses Apply or Cancel, kills the backend mid-edit. It records what the document holds at
# each point into the spec's "out" folder (JSON facts + raw pixel dumps) and quits Krita; the test
# checks those files. Steps are generator functions stepped by a timer, so Krita's event loop (and
# the plugin's modal dialog) keeps running while the driver waits.
import json
import os
import signal
import time
import traceback

from krita import Extension, Krita, Selection
from PyQt5.QtCore import QTimer
from PyQt5.QtWidgets import QApplication

SPEC = json.load(open(os.environ["ANYCOST_E2E_SPEC"]))
OUT = SPEC["out"]
RESULTS: dict = {"steps": [], "events": []}


def save():
    tmp = os.path.join(OUT, "results.json.tmp")
    with open(tmp, "w") as f:
        json.dump(RESULTS, f, indent=1, default=str)
    os.replace(tmp, os.path.join(OUT, "results.json"))


def dump(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(bytes(data))


def event(text):
    RESULTS["events"].append([round(time.monotonic() - T0, 2), text])


T0 = time.monotonic()
MOVED_TO = (40, 60)  # where the user moves the first dialog


def wait_for(cond, timeout, what):
    """Yield until cond() is truthy (steps run every 50 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        yield


def sleep(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        yield


class Driver(Extension):
    def setup(self):
        Krita.instance().notifier().windowCreated.connect(lambda: QTimer.singleShot(200, self.start))

    def createActions(self, window):
        pass

    def start(self):
        self.gen = self.scenario()
        self.timer = QTimer()
        self.timer.setInterval(50)
        self.timer.timeout.connect(self.step)
        self.timer.start()
        QTimer.singleShot(int(SPEC["watchdog_s"] * 1000), self.watchdog)

    def step(self):
        try:
            next(self.gen)
        except StopIteration:
            self.finish(None)
        except Exception:
            self.finish(traceback.format_exc())

    def watchdog(self):
        self.finish("watchdog: the scenario did not finish in time")

    def finish(self, error):
        if getattr(self, "finished", False):
            return
        self.finished = True
        self.timer.stop()
        RESULTS["error"] = error
        RESULTS["finished"] = True
        save()
        dialog = self.plugin().dialog if self.plugin() else None
        if dialog is not None:
            dialog.reject()
        for d in Krita.instance().documents():
            d.setModified(False)
        event("quit")
        save()
        QTimer.singleShot(300, lambda: Krita.instance().action("file_quit").trigger())

    # ------------------------------------------------------------------ helpers
    def plugin(self):
        import anycost_face_edit.extension as ext

        return ext.instance

    def snapshot(self, doc, tag):
        """Layer names (bottom to top) and the whole image's pixels at this point."""
        doc.waitForDone()
        doc.refreshProjection()
        names = [n.name() for n in doc.rootNode().childNodes()]
        dump(f"{tag}_image.raw", doc.pixelData(0, 0, doc.width(), doc.height()))
        RESULTS[tag] = {"layers": names, "modified": doc.modified()}
        save()
        return names

    def open_dialog(self):
        plugin = self.plugin()
        action = Krita.instance().action("anycost_face_edit")
        RESULTS.setdefault("action", {"text": action.text(), "shortcut": action.shortcut().toString(),
                                      "enabled": action.isEnabled()})
        QTimer.singleShot(0, action.trigger)  # exec() of the modal dialog runs inside this call
        dialog = yield from wait_for(lambda: plugin.dialog, 20, "the dialog")
        return dialog

    def placement(self, dialog):
        """Where the dialog opened, against Krita's window and the screen's available area."""
        def rect(r):
            return [r.x(), r.y(), r.width(), r.height()]

        window = Krita.instance().activeWindow().qwindow()
        screen = window.windowHandle().screen() if window.windowHandle() is not None else None
        avail = (screen or QApplication.primaryScreen()).availableGeometry()

        def global_rect(w):
            p = w.mapToGlobal(w.rect().topLeft())
            return [p.x(), p.y(), w.width(), w.height()]

        return {"dialog": rect(dialog.frameGeometry()), "window": rect(window.frameGeometry()),
                "available": rect(avail), "size": [dialog.width(), dialog.height()],
                "widgets": {w.objectName(): global_rect(w) for w in (dialog.apply_button, dialog.cancel_button,
                                                                     dialog.quality, dialog.latency)}}

    def wait_ready(self, dialog, timeout):
        from anycost_client.edit_controller import Phase

        c = dialog.controller
        yield from wait_for(lambda: c.phase == Phase.READY or c.finished, timeout, "the session to be ready")
        if c.phase != Phase.READY:
            raise RuntimeError(f"the edit did not become ready: {c.phase.value}: {c.message}")

    def drag(self, dialog, name, values):
        """Move a slider through several positions, like a drag (waits a little between positions)."""
        for v in values:
            dialog.set_slider(name, v)
            yield from sleep(0.08)

    def preview_layer(self, doc):
        for n in doc.rootNode().childNodes():
            if n.name().startswith("Anycost preview"):
                return n
        return None

    # ------------------------------------------------------------------ the scenario
    def formats(self):
        """The adapter's idea of each depth against Krita's own colour conversion: the plugin writes a
        known RGBA8 pattern into a 16-bit / float layer, Krita converts the image to 8-bit, and the 8-bit
        pixels must be the pattern."""
        from anycost_face_edit.krita_canvas import KritaCanvas, node_format, read_region

        from anycost_client.regions import FormatError

        k = Krita.instance()
        w = h = 32
        pattern = bytes(((i * 37) % 256, (i * 11 + 5) % 256, (i * 101) % 256, 255) [c] for i in range(w * h)
                        for c in range(4))
        out = {}
        for depth in SPEC["depths"]:
            doc = k.createDocument(w, h, f"fmt-{depth}", "RGBA", depth, "", 72.0)
            src = doc.rootNode().childNodes()[0]
            region = read_region(doc, src, 0.0)
            canvas = KritaCanvas(k, doc, src, region)
            canvas.write_result(pattern, "pattern")
            layer = [n for n in doc.rootNode().childNodes() if n.name() == "pattern"][0]
            fmt = node_format(layer)
            profile = str(layer.colorProfile())
            back = read_region(doc, layer, 0.0).rgba  # the adapter reading what it wrote
            doc.setColorSpace("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc")
            doc.waitForDone()
            layer = [n for n in doc.rootNode().childNodes() if n.name() == "pattern"][0]
            bgra = bytes(layer.pixelData(0, 0, w, h))
            krita8 = bytes(bgra[i + (2, 1, 0, 3)[i % 4] - i % 4] for i in range(len(bgra)))
            out[depth] = {"profile": profile, "linear": fmt.linear, "order": fmt.order,
                          "adapter_round_trip": back == pattern,
                          "max_diff_vs_krita": max(abs(a - b) for a, b in zip(krita8, pattern, strict=True))}
            doc.setModified(False)
            doc.close()
        gray = k.createDocument(16, 16, "gray", "GRAYA", "U8", "", 72.0)
        try:
            read_region(gray, gray.rootNode().childNodes()[0], 0.0)
            out["GRAYA"] = "accepted"
        except FormatError as e:
            out["GRAYA"] = str(e)
        gray.setModified(False)
        gray.close()
        RESULTS["formats"] = out
        save()

    def menus(self):
        """The plugin's action without a document (disabled), and the menu that holds it."""
        k = Krita.instance()
        action = k.action("anycost_face_edit")
        RESULTS["enabled_without_document"] = action.isEnabled()
        holders = []
        for top in k.activeWindow().qwindow().menuBar().actions():
            menu = top.menu()
            if menu is not None and action in menu.actions():
                holders.append(menu.objectName())
        RESULTS["menus_holding_action"] = holders
        import msgpack
        import zmq

        RESULTS["imported_from"] = {"zmq": zmq.__file__, "msgpack": msgpack.__file__}
        save()

    def scenario(self):
        k = Krita.instance()
        self.menus()
        if "formats" in SPEC["scenarios"]:
            self.formats()
            yield
        doc = k.openDocument(SPEC["image"])
        k.activeWindow().addView(doc)
        yield from sleep(0.5)
        source = doc.rootNode().childNodes()[0]
        doc.setActiveNode(source)
        from anycost_face_edit import qt_compat

        RESULTS["plugin_qt6"] = qt_compat.QT6
        RESULTS["source"] = {"name": source.name(), "model": source.colorModel(), "depth": source.colorDepth()}
        x, y, w, h = SPEC["selection"]
        sel = Selection()
        sel.select(x, y, w, h, 255)
        doc.setSelection(sel)
        yield from sleep(0.2)
        # the user's own last step before the dialog: Cancel, or Apply and one Undo, must keep it
        mine = doc.createNode("User layer", "paintlayer")
        source.parentNode().addChildNode(mine, source)
        doc.waitForDone()
        yield from sleep(0.3)
        # and a step the user took back: a Redo is pending when the dialog opens
        redo = doc.createNode("Redo layer", "paintlayer")
        source.parentNode().addChildNode(redo, mine)
        doc.waitForDone()
        yield from sleep(0.3)
        k.action("edit_undo").trigger()
        doc.waitForDone()
        yield from sleep(0.3)
        RESULTS["redo_pending"] = [n.name() for n in doc.rootNode().childNodes()]

        def source_active():
            doc.setActiveNode(source)  # takes effect through the event loop
            return doc.activeNode() is not None and doc.activeNode().name() == source.name()

        yield from sleep(0.5)  # Krita makes the new layer active later, through its event loop
        yield from wait_for(source_active, 10, "the source layer to be active again")
        yield from sleep(0.3)
        yield from wait_for(source_active, 10, "the source layer to stay active")
        doc.setModified(False)
        self.snapshot(doc, "before")
        dump("source_before.raw", source.pixelData(0, 0, doc.width(), doc.height()))
        specs = {}

        # 1. Cancel: previews appear in a temporary layer, then every trace goes
        dialog = yield from self.open_dialog()
        event("dialog 1 open")
        # every value the projection's progress bar shows (with its maximum: 0 is the busy bar)
        progress = []
        dialog.progress.valueChanged.connect(lambda v: progress.append([dialog.progress.maximum(), v]))
        RESULTS["progress"] = progress
        yield from self.wait_ready(dialog, SPEC["ready_timeout_s"])
        c = dialog.controller
        RESULTS["progress_when_ready"] = [dialog.progress.minimum(), dialog.progress.maximum(),
                                          dialog.progress.value()]
        RESULTS["preview_choice"] = dialog.choice.text()
        RESULTS["placement"] = self.placement(dialog)
        specs = {n: [s.lo, s.hi] for n, s in c.specs.items()}
        RESULTS["directions"] = specs
        RESULTS["region"] = list(c.region.rect.as_tuple())
        RESULTS["levels"] = c.levels
        names = list(specs)
        yield from self.drag(dialog, names[0], [0.2, 0.5, 0.8])
        yield from wait_for(lambda: c.previews_shown >= 1 and self.preview_layer(doc), 60, "a preview on the canvas")
        pv = self.preview_layer(doc)
        RESULTS["cancel_preview"] = {"layers": [n.name() for n in doc.rootNode().childNodes()],
                                     "locked": pv.locked(), "previews": c.previews_shown,
                                     "latency": c.latency_text(), "status": dialog.status.text()}
        dump("cancel_preview_layer.raw", pv.pixelData(*c.region.rect.as_tuple()))
        dump("source_during_preview.raw", source.pixelData(0, 0, doc.width(), doc.height()))
        RESULTS["placement"]["size_after_preview"] = [dialog.width(), dialog.height()]
        dialog.grab().save(os.path.join(OUT, "dialog.png"))  # to look at
        QApplication.primaryScreen().grabWindow(0).save(os.path.join(OUT, "screen.png"))
        dialog.move(*MOVED_TO)  # the user moves the dialog: the next one opens there
        yield from sleep(0.2)
        RESULTS["placement"]["moved_to"] = [dialog.pos().x(), dialog.pos().y()]
        dialog.cancel_button.click()
        yield from wait_for(lambda: self.plugin().dialog is None, 20, "the dialog to close")
        event("dialog 1 cancelled")
        self.snapshot(doc, "after_cancel")
        # Redo now: the user's pending Redo was dropped by the preview's first step; what comes back is
        # the emptied temporary layer, which Undo takes away again
        k.action("edit_redo").trigger()
        doc.waitForDone()
        yield from sleep(0.3)
        pv = self.preview_layer(doc)
        RESULTS["redo_after_cancel"] = {
            "layers": [n.name() for n in doc.rootNode().childNodes()],
            "preview_empty": None if pv is None else not any(bytes(pv.pixelData(*c.region.rect.as_tuple()))[3::4])}
        k.action("edit_undo").trigger()
        doc.waitForDone()
        yield from sleep(0.3)
        RESULTS["undo_after_that_redo"] = [n.name() for n in doc.rootNode().childNodes()]
        doc.setActiveNode(source)
        # the newest step in the history is the user's again: one Undo takes back their layer, Redo returns it
        k.action("edit_undo").trigger()
        doc.waitForDone()
        RESULTS["after_cancel_undo"] = [n.name() for n in doc.rootNode().childNodes()]
        k.action("edit_redo").trigger()
        doc.waitForDone()
        yield from sleep(0.3)
        RESULTS["after_cancel_redo"] = [n.name() for n in doc.rootNode().childNodes()]
        doc.setActiveNode(source)
        yield from wait_for(lambda: doc.activeNode() is not None and doc.activeNode().name() == source.name(), 10,
                            "the source layer to be active")

        if "apply" not in SPEC["scenarios"]:
            return
        # 2. Apply: a new layer at the region, one undo step
        dialog = yield from self.open_dialog()
        event("dialog 2 open")
        yield from self.wait_ready(dialog, SPEC["ready_timeout_s"])
        c = dialog.controller
        RESULTS["placement_again"] = [dialog.pos().x(), dialog.pos().y()]
        quality = dialog.quality
        RESULTS["quality_items"] = [quality.itemData(i) for i in range(quality.count())]
        yield from self.drag(dialog, names[0], [0.3, 0.6, 0.9])
        yield from self.drag(dialog, names[1], [-0.4, -0.8])
        target = {names[0]: 0.9, names[1]: -0.8}
        yield from wait_for(lambda: c.previews_shown >= 2 and c._state.last_shown_seq == c._state.last_sent_seq
                            and not c._state.last_shown_draft, 60, "the full preview of the last slider position")
        pv = self.preview_layer(doc)
        RESULTS["apply_preview"] = {"layers": [n.name() for n in doc.rootNode().childNodes()], "locked": pv.locked(),
                                    "previews": c.previews_shown, "latency": c.latency_text(),
                                    "latency_label": dialog.latency.text(), "status": dialog.status.text(),
                                    "thumbnail_updates": dialog.thumbnail_updates,
                                    "sliders": dict(c.sliders), "target": target}
        RESULTS["confirm_apply"] = c.confirm_apply
        asked = []
        dialog.confirm = lambda question: asked.append(question) or True  # the user answers "Yes"
        dialog.apply_button.click()
        RESULTS["confirm_asked"] = asked
        yield from wait_for(lambda: self.plugin().dialog is None, 120, "Apply to finish")
        event("dialog 2 applied")
        RESULTS["apply_phase"] = c.phase.value
        names_after = self.snapshot(doc, "after_apply")
        new = [n for n in doc.rootNode().childNodes() if n.name() == c.result_name]
        if new:
            layer = new[0]
            b = layer.bounds()
            RESULTS["new_layer"] = {"name": layer.name(), "bounds": [b.x(), b.y(), b.width(), b.height()],
                                    "index": names_after.index(layer.name())}
            dump("new_layer_region.raw", layer.pixelData(*c.region.rect.as_tuple()))
        dump("source_after_apply.raw", source.pixelData(0, 0, doc.width(), doc.height()))
        k.action("edit_undo").trigger()
        yield from sleep(0.5)
        self.snapshot(doc, "after_undo")

        if "kill" not in SPEC["scenarios"]:
            return
        # 3. The backend is killed while the dialog is open: reported, restarted, reconnected, nothing written
        dialog = yield from self.open_dialog()
        event("dialog 3 open")
        yield from self.wait_ready(dialog, SPEC["ready_timeout_s"])
        c = dialog.controller
        link = c.link
        yield from self.drag(dialog, names[2 % len(names)], [0.5, -0.5])
        yield from wait_for(lambda: c.previews_shown >= 1, 60, "a preview before the kill")
        sliders_before = dict(c.sliders)
        shown_before = c.previews_shown
        statuses = []
        dialog.status.setText("")  # so that every status the dialog shows from now on is recorded

        def record():
            text = dialog.status.text()
            if not statuses or statuses[-1] != text:
                statuses.append(text)
            return text

        pid_before = link.launcher.pid if link.launcher else None
        info = json.load(open(str(link.connection_file)))
        os.kill(int(info["pid"]), signal.SIGKILL)
        event(f"killed backend pid {info['pid']}")
        yield from wait_for(lambda: record() and link.state.value == "reconnecting", 30, "the loss to be reported")
        yield from wait_for(lambda: record() and link.state.value == "connected" and c.sessions_opened >= 2
                            and c.phase.value == "ready", SPEC["ready_timeout_s"], "the reconnect")
        event("reconnected")
        yield from wait_for(lambda: record() and c.previews_shown > shown_before, 60, "a preview after the reconnect")
        RESULTS["kill"] = {"killed_pid": info["pid"], "launcher_pid_before": pid_before,
                           "launcher_pid_after": link.launcher.pid if link.launcher else None,
                           "restarts": link.restarts, "statuses": statuses, "sessions_opened": c.sessions_opened,
                           "sliders_before": sliders_before, "sliders_after": dict(c.sliders),
                           "dialog_sliders": {n: r.slider.value() for n, r in dialog.rows.items()},
                           "previews": c.previews_shown, "phase": c.phase.value}
        save()
        dialog.cancel_button.click()
        yield from wait_for(lambda: self.plugin().dialog is None, 20, "the dialog to close")
        self.snapshot(doc, "after_kill")
        RESULTS["log_file"] = self.plugin().log_file
        RESULTS["backend_pid_at_end"] = link.launcher.pid if link.launcher else None
        QApplication.processEvents()


Krita.instance().addExtension(Driver(Krita.instance()))
