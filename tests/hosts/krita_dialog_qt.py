# Runs under the system Python with PyQt (tests/test_krita_dialog.py): the plugin's real dialog and Qt
# event loop, without Krita, against a running backend. argv: QT (5 or 6), connection file, result file.
# With QT=5, PyQt5 is imported first, as Krita 5's own ``krita`` module does: the compatibility shim must
# then stay on PyQt5 even where PyQt6 is installed too.
import json
import sys
import time

qt, conn_file, out_file = sys.argv[1], sys.argv[2], sys.argv[3]
if qt == "5":
    import PyQt5.QtCore  # noqa: F401

from anycost_face_edit import qt_compat as Q  # noqa: E402
from anycost_face_edit.dialog import FaceEditDialog, QtEventLoop  # noqa: E402
from anycost_face_edit.settings import Settings  # noqa: E402

from anycost_client.controller import BackendLink, EditController, LinkSettings, Phase  # noqa: E402
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
link = BackendLink(QtEventLoop(), LinkSettings(connection_file=conn_file))
timer = Q.QTimer()
timer.timeout.connect(link.tick)
timer.start(250)
canvas = Canvas()
controller = EditController(link, region, canvas, refine_steps=5)
dialog = FaceEditDialog(controller, Settings())
# every value the progress bar shows, with its range (0..0 is the busy bar)
progress = []
dialog.progress.valueChanged.connect(lambda v: progress.append([dialog.progress.maximum(), v]))
controller.start()
dialog.show()
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
result["slider_value"] = controller.sliders[name]
result["latency_label"] = dialog.latency.text()
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
json.dump(result, open(out_file, "w"))
