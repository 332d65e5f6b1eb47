# Runs inside GIMP 3 (gimp-console under Xvfb, python-fu-eval batch) for tests/test_gimp_e2e.py. The
# test puts a line `SPEC = "/path/spec.json"` in front of this text and drives the plug-in's dialog
# with the keyboard from outside. Scenario "session" (the default): the first call is applied (then
# repeated with the last values and no dialog, on the layers GIMP has selected, as Filters > Repeat
# does), the second cancelled. Scenario "new_session" (a later GIMP process with the same settings
# folder): one call, which the test cancels. What the image holds after each is written to the spec's
# "out" folder.
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


def selected(image):
    return [la.get_name() for la in image.get_selected_layers()]


image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(spec["image"]))
image.clean_all()
background = image.get_layers()[0]
image.select_ellipse(Gimp.ChannelOps.REPLACE, *spec["ellipse"])
with open(os.path.join(out, "dialog-selection.a8"), "wb") as f:  # over the whole image: the test crops it
    f.write(bytes(image.get_selection().get_buffer().get(
        Gegl.Rectangle.new(0, 0, image.get_width(), image.get_height()), 1.0, "Y u8", Gegl.AbyssPolicy.NONE)))
image.clean_all()


def new_session(image, background):
    status, _ = call_dialog(image, background)  # the test presses Return (nothing may happen), then Escape
    report = {"new_session": {"status": status.value_name, "layers": layers(image), "dirty": image.is_dirty()}}
    with open(os.path.join(out, "dialog-new-session.json"), "w") as f:
        json.dump(report, f)


def session(image, background):
    report = {}
    status, layer = call_dialog(image, background)  # the test moves a slider and presses Return
    report["apply"] = {"status": status.value_name, "layers": layers(image), "dirty": image.is_dirty(),
                       "selected": selected(image)}
    if status == Gimp.PDBStatusType.SUCCESS:
        w, h = layer.get_width(), layer.get_height()
        with open(os.path.join(out, "dialog-layer.rgba"), "wb") as f:
            f.write(bytes(layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "R'G'B'A u8",
                                                 Gegl.AbyssPolicy.NONE)))
        # Filters > Repeat: the values applied in the dialog are the procedure's last values, and it edits the
        # layer GIMP has selected, which must still be the face's, not the result layer just added.
        status, again = call_dialog(image, image.get_selected_layers()[0], Gimp.RunMode.WITH_LAST_VALS)
        report["repeat"] = {"status": status.value_name, "layer": again.get_name() if again is not None else None,
                            "layers": [la["name"] for la in layers(image)], "selected": selected(image)}
        if status == Gimp.PDBStatusType.SUCCESS:
            image.remove_layer(again)
        image.remove_layer(layer)
    image.clean_all()

    status, _ = call_dialog(image, background)  # the test moves a slider and presses Escape
    report["cancel"] = {"status": status.value_name, "layers": layers(image), "dirty": image.is_dirty()}
    with open(os.path.join(out, "dialog-report.json"), "w") as f:
        json.dump(report, f)


(new_session if spec.get("scenario") == "new_session" else session)(image, background)
image.delete()
