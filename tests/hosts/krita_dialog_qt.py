# Runs under the system Python with PyQt (tests/test_krita_dialog.py): the plugin's real dialog and Qt
# event loop, without Krita, against a running backend. argv: QT (5 or 6), connection file, result file,
# screenshot file. With QT=5, PyQt5 is imported first, as Krita 5's own ``krita`` module does: the
# compatibility shim must then stay on PyQt5 even where PyQt6 is installed too.
import json
import os
import signal
import sys
import time

qt, conn_file, out_file, shot_file = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
if qt == "5":
    import PyQt5.QtCore  # noqa: F401

from anycost_face_edit import qt_compat as Q  # noqa: E402
from anycost_face_edit.dialog import EDGE_MARGIN, FRAME_ALLOWANCE, FaceEditDialog, QtEventLoop  # noqa: E402
from anycost_face_edit.settings import Settings  # noqa: E402

from anycost_client.backend_link import BackendLink, LinkSettings  # noqa: E402
from anycost_client.edit_controller import EditController, Phase  # noqa: E402
from anycost_client.regions import Rect, Region  # noqa: E402

app = Q.QApplication([])
result = {"qt6": Q.QT6}


class Canvas:
    def __init__(self):
        self.previews, self.results, self.discarded = 0, [], 0

    def show_preview(self, frame):
        self.previews += 1

    def write_result(self, rgba, name):
        self.results.append(name)

    def discard(self):
        self.discarded += 1


def wait(cond, timeout):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError
        app.processEvents()
        time.sleep(0.01)


w = h = 64
region = Region(Rect(0, 0, w, h), bytes((i * 7) % 256 if i % 4 != 3 else 255 for i in range(w * h * 4)))
# quick heartbeats: a backend that stops answering is noticed within a couple of seconds
link = BackendLink(QtEventLoop(), LinkSettings(connection_file=conn_file, ping_interval=0.3, pong_timeout=1.5))
timer = Q.QTimer()
timer.timeout.connect(link.tick)
timer.start(250)
canvas = Canvas()
controller = EditController(link, region, canvas, refine_steps=5)
dialog = FaceEditDialog(controller, Settings())
# every size the dialog takes once shown: text that arrives later must not resize it
sizes = []
_resize = dialog.resizeEvent


def on_resize(event):
    sizes.append([event.size().width(), event.size().height()])
    _resize(event)


dialog.resizeEvent = on_resize
# every value the progress bar shows, with its range (0..0 is the busy bar)
progress = []
dialog.progress.valueChanged.connect(lambda v: progress.append([dialog.progress.maximum(), v]))
controller.start()
dialog.show()
app.processEvents()
result["size_shown"] = [dialog.width(), dialog.height()]
result["latency_before"] = dialog.latency.text()
wait(lambda: controller.phase == Phase.READY, 60)
app.processEvents()
result["progress"] = progress
result["progress_at_ready"] = [dialog.progress.maximum(), dialog.progress.value()]
result["sliders"] = list(dialog.rows)
result["quality_items"] = dialog.quality.count()
dialog.quality.setCurrentIndex(1)  # a fixed cost
name = list(dialog.rows)[0]
dialog.set_slider(name, 0.5)
wait(lambda: canvas.previews >= 1 and controller.preview_cost == dialog.quality.itemData(1), 60)
app.processEvents()
result["slider_value"] = controller.sliders[name]
result["latency_label"] = dialog.latency.text()
result["size_after_preview"] = [dialog.width(), dialog.height()]
result["thumbnail_updates"] = dialog.thumbnail_updates
result["apply_enabled"] = dialog.apply_button.isEnabled()
dialog.rows[name].reset.click()
result["after_reset"] = controller.sliders[name]
names = list(dialog.rows)
dialog.set_slider(names[1], 0.7)
dialog.set_slider(names[2], -0.3)
moved = [controller.sliders[n] for n in names]
dialog.reset_all.click()
result["reset_all"] = {"before": moved, "after": [controller.sliders[n] for n in names],
                       "positions": [dialog.rows[n].slider.value() for n in names]}
result["preview_choice"] = dialog.choice.text()
result["retry_visible"] = dialog.retry_button.isVisible()

# the backend hangs (SIGSTOP): missed heartbeats say so within seconds, naming it, once, with Retry; once it
# answers again the edit goes on by itself
pid = json.load(open(conn_file))["pid"]
shown_before = canvas.previews
apply_at = dialog.apply_button.mapToGlobal(Q.QPoint(0, 0))
os.kill(pid, signal.SIGSTOP)
try:
    stopped_at = time.monotonic()
    wait(lambda: controller.can_retry, 20)
    app.processEvents()
    result["hung"] = {"after_s": time.monotonic() - stopped_at, "pid": pid, "status": dialog.status.text(),
                      "retry_visible": dialog.retry_button.isVisible(), "phase": controller.phase.value,
                      "cancel_text": dialog.cancel_button.text(),
                      "apply_moved": dialog.apply_button.mapToGlobal(Q.QPoint(0, 0)) != apply_at}
finally:
    os.kill(pid, signal.SIGCONT)
dialog.set_slider(names[1], 0.2)  # moved while it hung: shown once it is back
wait(lambda: controller.phase == Phase.READY and link.connected and canvas.previews > shown_before, 60)
app.processEvents()
result["after_hang"] = {"status": dialog.status.text(), "retry_visible": dialog.retry_button.isVisible(),
                        "sessions_opened": controller.sessions_opened}
dialog.set_slider(names[1], 0.0)
result["sizes"] = sizes
result["size_end"] = [dialog.width(), dialog.height()]
dialog.grab().save(shot_file)
dialog.set_slider(name, -0.4)
result["confirm_apply"] = controller.confirm_apply
asked = []
dialog.confirm = lambda question: asked.append(question) or True  # the user answers "Yes"
dialog.apply_button.click()
result["confirm_asked"] = asked
wait(lambda: controller.finished, 60)
result["phase"] = controller.phase.value
result["results"] = canvas.results
result["dialog_result"] = dialog.result()
link.shutdown()


# ---------------------------------------------------------------- the dialog on small and tall screens
def visible_on(widget, avail):
    top_left = widget.mapToGlobal(Q.QPoint(0, 0))
    return avail.contains(Q.QRect(top_left, widget.size()))


screens = {}
many = {f"direction_{i}": {"range": [-1.0, 1.0]} for i in range(24)}  # more sliders than any screen holds
for name, (sw, sh) in {"1366x768": (1366, 768), "1000 tall": (1600, 1000), "1024x600": (1024, 600)}.items():
    avail = Q.QRect(0, 0, sw, sh - 40)  # a panel at the bottom
    window = Q.QRect(0, 0, sw, sh - 40)  # Krita maximised
    c2 = EditController(BackendLink(QtEventLoop(), LinkSettings(connection_file=conn_file)), region, Canvas())
    c2._directions_from(many)
    d2 = FaceEditDialog(c2, Settings())
    d2.fit_to_screen(avail)
    at = d2.place_on_screen(window=window, available=avail)
    d2.show()
    app.processEvents()
    frame_bottom = d2.y() + d2.height() + FRAME_ALLOWANCE
    screens[name] = {
        "at": list(at), "size": [d2.width(), d2.height()], "fits": frame_bottom <= avail.bottom() + 1,
        "on_screen": {w.objectName(): visible_on(w, avail) for w in (d2.apply_button, d2.cancel_button,
                                                                      d2.quality, d2.latency, d2.status_box)},
        "scrolls": d2.slider_scroll.verticalScrollBar().maximum() > 0, "rows": len(d2.rows),
        "right_edge": d2.x() + d2.width() >= window.right() - 2 * EDGE_MARGIN}
    # where the user leaves it is where it opens next time, kept on the screen
    d2.move(200, 20)
    d2.done(0)
    screens[name]["position"] = list(d2.position)
    d3 = FaceEditDialog(c2, Settings())
    d3.fit_to_screen(avail)
    screens[name]["reopened_at"] = list(d3.place_on_screen(window=window, saved=d2.position, available=avail))
    screens[name]["clamped"] = list(d3.place_on_screen(window=window, saved=(5000, -300), available=avail))
    if name == "1366x768":
        d2.grab().save(shot_file.replace(".png", "-1366x768.png"))
    d3.deleteLater()
    d2.deleteLater()
result["screens"] = screens
json.dump(result, open(out_file, "w"))
