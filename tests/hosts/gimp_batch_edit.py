# Runs inside GIMP 3 (gimp-console, python-fu-eval batch) for tests/test_gimp_e2e.py. The test puts
# a line `SPEC = "/path/spec.json"` in front of this text. Scenario "edit": calls the installed
# plug-in non-interactively on an 8-bit image (three times), on a selection reaching past a layer at an
# offset, and on a copy converted to the spec's higher precision, and writes what the images hold
# afterwards to the spec's "out" folder. Scenarios "no_backend" and "backend_dies" (the test kills the
# backend mid-call): one call that must fail, its status and message. The test checks the output. An
# unexpected failure raises, so gimp-console exits with 64.
import json
import os
import re
import time
from array import array

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402

spec = json.load(open(SPEC))  # noqa: F821 - SPEC is defined by the line the test prepends
out = spec["out"]
FMT = "R'G'B'A u8"


def pixels(drawable, x, y, w, h, fmt=FMT):
    return bytes(drawable.get_buffer().get(Gegl.Rectangle.new(x, y, w, h), 1.0, fmt, Gegl.AbyssPolicy.NONE))


def layer_names(image):
    return [la.get_name() for la in image.get_layers()]


def call_plugin(image, layer, sliders):
    proc = Gimp.get_pdb().lookup_procedure(spec["procedure"])
    if proc is None:
        raise RuntimeError(f"the plug-in procedure {spec['procedure']} is not registered")
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    config.set_property("sliders", sliders)
    config.set_property("refine-steps", spec["refine_steps"])
    config.set_property("cost", "full")
    result = proc.run(config)
    status = result.index(0)
    value = result.index(1) if result.length() > 1 else None
    return status, value


def load():
    return Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(spec["image"]))


def save(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


def selection_bounds(image):
    _, _, x1, y1, x2, y2 = Gimp.Selection.bounds(image)
    return [x1, y1, x2 - x1, y2 - y1]


def save_selection(image, name):
    """The selection's coverage over the whole image: the test crops it at the region it expects."""
    save(name, pixels(image.get_selection(), 0, 0, image.get_width(), image.get_height(), "Y u8"))


def face_copy(image, background):
    """A layer of its own at an offset, holding a part of the face: spec["copy"] placed at spec["copy_to"]."""
    x, y, w, h = spec["copy"]
    layer = Gimp.Layer.new(image, "face2", w, h, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    layer.get_buffer().set(Gegl.Rectangle.new(0, 0, w, h), FMT, pixels(background, x, y, w, h))
    layer.get_buffer().flush()
    image.insert_layer(layer, None, 0)
    layer.set_offsets(*spec["copy_to"])
    return layer


def registration():
    """How GIMP registered the procedure: its menu label, menu paths and image types as the PDB reports them.
    GIMP 3.0's PDB has no query for the sensitivity mask (a looked-up procedure reports its default), so
    that comes from GIMP's own record of the registration, the pluginrc it wrote at startup."""
    proc = Gimp.get_pdb().lookup_procedure(spec["procedure"])
    found = {"menu_label": proc.get_menu_label(), "menu_paths": list(proc.get_menu_paths()),
             "image_types": proc.get_image_types(),
             "sensitive_drawable": int(Gimp.ProcedureSensitivityMask.DRAWABLE)}
    with open(os.path.join(Gimp.directory(), "pluginrc"), "rb") as f:
        rc = f.read().decode("utf-8", "replace")  # other plug-ins' icons are stored as raw bytes
    # (proc-def "NAME" TYPE "blurb" "help" "authors" "copyright" "date" "label" N-PATHS (menu-path …)…
    #  (icon …) "IMAGE-TYPES" SENSITIVITY-MASK N-ARGS N-VALUES (proc-arg …) …)
    head = r'\(proc-def "' + re.escape(spec["procedure"]) + '" '
    m = re.search(head + r'.*?\(icon [^\n]*\)\s+"([^"]*)"\s+(-?\d+)', rc, re.DOTALL)
    found["pluginrc"] = {"image_types": m.group(1), "sensitivity_mask": int(m.group(2))} if m else None
    return found


def no_backend():
    """No backend runs and none is configured: the call fails with a message and adds nothing."""
    image = load()
    image.clean_all()
    before = layer_names(image)
    status, message = call_plugin(image, image.get_layers()[0], spec["sliders"])
    with open(os.path.join(out, "no-backend.json"), "w") as f:
        json.dump({"status": status.value_name, "message": str(message), "layers_before": before,
                   "layers_after": layer_names(image), "dirty": image.is_dirty()}, f)
    image.delete()


def backend_dies():
    """The backend is killed while the call waits (the test kills it): the call must fail soon after, with a
    message, and add nothing. Reports when the call returned (wall clock, as the test's kill time is)."""
    image = load()
    image.clean_all()
    before = layer_names(image)
    status, message = call_plugin(image, image.get_layers()[0], spec["sliders"])
    returned = time.time()
    with open(os.path.join(out, "backend-dies.json"), "w") as f:
        json.dump({"status": status.value_name, "message": str(message), "returned": returned,
                   "layers_before": before, "layers_after": layer_names(image), "dirty": image.is_dirty()}, f)
    image.delete()


def edit_8bit(report):
    """Three calls on the 8-bit image; what the image holds afterwards."""
    image = load()
    background = image.get_layers()[0]

    # 1. An elliptical (antialiased) selection on the background: the selection's bounds and its mask.
    image.select_ellipse(Gimp.ChannelOps.REPLACE, *spec["ellipse"])
    save_selection(image, "selection.a8")
    report["selection_bounds"] = selection_bounds(image)
    status, layer_a = call_plugin(image, background, spec["sliders"])
    if status != Gimp.PDBStatusType.SUCCESS:
        raise RuntimeError(f"the plug-in failed on the selection: {status} {layer_a}")
    # the face's layer stays selected, so the next call (or Filters > Repeat) edits it again
    report["runs"].append({"layer": layer_a.get_name(),
                           "selected": [la.get_name() for la in image.get_selected_layers()]})

    # 2. An unknown slider (known only once the backend names its model's sliders) and a malformed one: the
    # call must fail with a message and leave the image alone.
    n_layers = len(image.get_layers())
    for name, sliders in (("bad_slider", "no_such_slider=0.5"), ("malformed", "smile")):
        status, message = call_plugin(image, background, sliders)
        report[name] = {"status": status.value_name, "message": str(message),
                        "layers_before": n_layers, "layers_after": len(image.get_layers())}

    # 3. No selection, on a layer of its own at an offset: the whole drawable.
    Gimp.Selection.none(image)
    face2 = face_copy(image, background)
    status, layer_b = call_plugin(image, face2, spec["sliders"])
    if status != Gimp.PDBStatusType.SUCCESS:
        raise RuntimeError(f"the plug-in failed on a whole layer: {status} {layer_b}")
    report["runs"].append({"layer": layer_b.get_name()})

    # What the image holds now: every layer (top first) and the composite.
    report["layers"] = []
    for i, layer in enumerate(image.get_layers()):
        _, ox, oy = layer.get_offsets()
        lw, lh = layer.get_width(), layer.get_height()
        name = f"layer{i}.rgba"
        with open(os.path.join(out, name), "wb") as f:
            f.write(pixels(layer, 0, 0, lw, lh))
        report["layers"].append({"name": layer.get_name(), "offsets": [ox, oy], "size": [lw, lh], "file": name})
    flat = image.duplicate()
    composite = flat.flatten()
    with open(os.path.join(out, "composite.rgba"), "wb") as f:
        f.write(pixels(composite, 0, 0, flat.get_width(), flat.get_height()))
    flat.delete()
    report["image_size"] = [image.get_width(), image.get_height()]
    image.delete()


def edit_offset_layer(report):
    """4. An elliptical selection on a layer at an offset, reaching past the layer's top-left corner: the region
    lies in image coordinates, the layer's pixels are read at its offsets (transparent beyond it)."""
    image = load()
    face2 = face_copy(image, image.get_layers()[0])
    image.select_ellipse(Gimp.ChannelOps.REPLACE, *spec["offset_ellipse"])
    save_selection(image, "offset-selection.a8")
    status, layer = call_plugin(image, face2, spec["sliders"])
    if status != Gimp.PDBStatusType.SUCCESS:
        raise RuntimeError(f"the plug-in failed on a layer at an offset: {status} {layer}")
    _, ox, oy = layer.get_offsets()
    save("offset-layer.rgba", pixels(layer, 0, 0, layer.get_width(), layer.get_height()))
    report["offset"] = {"selection_bounds": selection_bounds(image), "layers": layer_names(image),
                        "layer": {"name": layer.get_name(), "offsets": [ox, oy],
                                  "size": [layer.get_width(), layer.get_height()]}}
    image.delete()


def edit_high_precision(report):
    """5. The ellipse on a copy converted to a higher precision (e.g. 16-bit linear): the plug-in reads
    and writes 8-bit perceptual pixels, yet what it did not change must keep the image's own values."""
    fmt_hi = spec["precision_format"]
    image = load()
    if not image.convert_precision(getattr(Gimp.Precision, spec["precision"])):
        raise RuntimeError(f"cannot convert the image to {spec['precision']}")
    background = image.get_layers()[0]
    w, h = image.get_width(), image.get_height()
    # a little noise below 8-bit steps, so the image holds values that no 8-bit pixel can carry
    values = array("H", pixels(background, 0, 0, w, h, fmt_hi))
    values = array("H", [v if i % 4 == 3 else min(65535, v + (i * 7919) % 17) for i, v in enumerate(values)])
    buf = background.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, w, h), fmt_hi, values.tobytes())
    buf.flush()
    background.update(0, 0, w, h)
    save("hi-before.raw", pixels(background, 0, 0, w, h, fmt_hi))
    image.select_ellipse(Gimp.ChannelOps.REPLACE, *spec["ellipse"])
    save("hi-image.rgba", pixels(background, 0, 0, w, h))  # what the plug-in reads, in the region it edits
    status, layer = call_plugin(image, background, spec["sliders"])
    if status != Gimp.PDBStatusType.SUCCESS:
        raise RuntimeError(f"the plug-in failed on the {spec['precision']} image: {status} {layer}")
    _, ox, oy = layer.get_offsets()
    save("hi-layer.rgba", pixels(layer, 0, 0, layer.get_width(), layer.get_height()))
    flat = image.duplicate()
    composite = flat.flatten()
    save("hi-composite.raw", pixels(composite, 0, 0, w, h, fmt_hi))
    save("hi-composite.rgba", pixels(composite, 0, 0, w, h))
    flat.delete()
    report["precision"] = {"precision": image.get_precision().value_name, "layers": layer_names(image),
                           "layer": {"name": layer.get_name(), "offsets": [ox, oy],
                                     "size": [layer.get_width(), layer.get_height()]},
                           "selection_bounds": selection_bounds(image)}
    image.delete()


if spec.get("scenario") == "no_backend":
    no_backend()
elif spec.get("scenario") == "backend_dies":
    backend_dies()
else:
    results = {"runs": [], "registration": registration()}
    edit_8bit(results)
    edit_offset_layer(results)
    edit_high_precision(results)
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(results, f)
