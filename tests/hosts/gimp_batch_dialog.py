# Runs inside GIMP 3 (gimp-console under Xvfb, python-fu-eval batch) for tests/test_gimp_e2e.py. The
# test puts a line `SPEC = "/path/spec.json"` in front of this text and drives the plug-in's dialog
# with the keyboard from outside: the first call is applied (then repeated with the last values, no
# dialog), the second cancelled. What the image holds after each is written to the spec's "out" folder.
import json
import os

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402

spec = json.load(open(SPEC))  # noqa: F821 - SPEC is defined by the line the test prepends
out = spec["out"]


def call_dialog(image, layer, mode=Gimp.RunMode.INTERACTIVE):
    proc = Gimp.get_pdb().lookup_procedure(spec["procedure"])
    config = proc.create_config()
    config.set_property("run-mode", mode)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    result = proc.run(config)
    return result.index(0), (result.index(1) if result.length() > 1 else None)


def layers(image):
    return [{"name": la.get_name(), "offsets": list(la.get_offsets()[1:]), "size": [la.get_width(), la.get_height()]}
            for la in image.get_layers()]


image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(spec["image"]))
image.clean_all()
background = image.get_layers()[0]
image.select_ellipse(Gimp.ChannelOps.REPLACE, *spec["ellipse"])
x, y, w, h = spec["ellipse"]
with open(os.path.join(out, "dialog-selection.a8"), "wb") as f:
    f.write(bytes(image.get_selection().get_buffer().get(Gegl.Rectangle.new(x, y, w, h), 1.0, "Y u8",
                                                         Gegl.AbyssPolicy.NONE)))
image.clean_all()
report = {}

status, layer = call_dialog(image, background)  # the test moves a slider and presses Return
report["apply"] = {"status": status.value_name, "layers": layers(image), "dirty": image.is_dirty()}
if status == Gimp.PDBStatusType.SUCCESS:
    w, h = layer.get_width(), layer.get_height()
    with open(os.path.join(out, "dialog-layer.rgba"), "wb") as f:
        f.write(bytes(layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "R'G'B'A u8",
                                             Gegl.AbyssPolicy.NONE)))
    image.remove_layer(layer)
    # Filters > Repeat: the values applied in the dialog are the procedure's last values.
    status, layer = call_dialog(image, background, Gimp.RunMode.WITH_LAST_VALS)
    report["repeat"] = {"status": status.value_name, "layer": layer.get_name() if layer is not None else None}
    if status == Gimp.PDBStatusType.SUCCESS:
        image.remove_layer(layer)
image.clean_all()

status, _ = call_dialog(image, background)  # the test moves a slider and presses Escape
report["cancel"] = {"status": status.value_name, "layers": layers(image), "dirty": image.is_dirty()}

with open(os.path.join(out, "dialog-report.json"), "w") as f:
    json.dump(report, f)
image.delete()
