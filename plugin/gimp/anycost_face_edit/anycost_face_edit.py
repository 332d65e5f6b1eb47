#!/usr/bin/env python3
"""Anycost Face Edit for GIMP 3: Filters > Anycost Face Edit…

Interactive: a dialog with the backend's sliders, live previews and Apply/Cancel. Non-interactive
(scripts, ``gimp-console`` batch): the procedure's arguments say what to do, e.g.

    proc = Gimp.get_pdb().lookup_procedure("plug-in-anycost-face-edit")
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    config.set_property("sliders", "smile=0.6,age=-0.3")
    result = proc.run(config)      # index 0: status, index 1: the new layer

Each call is its own process: it connects to the running backend through its connection file
(or starts the configured one), edits, adds the result as a new layer and exits.
"""

from __future__ import annotations

import os
import sys

# The plug-in's modules and the client package lie beside this file.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from face_edit_paths import add_bundled_paths  # noqa: E402

add_bundled_paths()  # the vendored pyzmq/msgpack, where GIMP bundles its own Python

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402

PROC_NAME = "plug-in-anycost-face-edit"


# One rule for the status of a failed call: CALLING_ERROR when the call itself is wrong (its arguments: the
# drawables, the image's mode, the selection, the sliders, the refinement steps, the cost; an unknown slider,
# a value outside its range or a cost the model does not render at is refused by the backend), EXECUTION_ERROR
# when a right call could not be carried out (no backend, a backend serving another model, a backend that
# failed or died, GIMP's Python lacking pyzmq). The message names the cause either way.
def _fail(procedure, message: str, status=Gimp.PDBStatusType.EXECUTION_ERROR):
    return procedure.new_return_values(status, GLib.Error.new_literal(GLib.quark_from_string("anycost"),
                                                                       message, 0))


def _bad_call(procedure, message: str):
    return _fail(procedure, message, Gimp.PDBStatusType.CALLING_ERROR)


def _success(procedure, layer):
    values = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)
    values.remove(1)
    values.insert(1, GObject.Value(Gimp.Layer, layer))
    return values


def run(procedure, run_mode, image, drawables, config, _data):
    # Imports that can fail (pyzmq/msgpack missing from GIMP's Python) give a message, not a traceback.
    try:
        import face_edit_canvas as canvas
        import face_edit_options as options
        from face_edit_session import ArgumentError, EditError, edit_region

        from anycost_client.edit_controller import edit_layer_name
    except ImportError as e:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return _fail(procedure, f"Anycost Face Edit cannot start: {e}. GIMP runs it with Python {version} "
                                f"({sys.executable}), which needs pyzmq and msgpack: on Linux install them "
                                "(Debian/Ubuntu: apt install python3-zmq python3-msgpack); where GIMP bundles its "
                                f"own Python, re-run 'anycost install gimp --vendor --python-version {version}'.")
    try:
        region = canvas.read_region(image, list(drawables))
    except canvas.CanvasError as e:
        return _bad_call(procedure, f"Anycost Face Edit: {e}.")

    if run_mode == Gimp.RunMode.INTERACTIVE:
        from face_edit_dialog import run_dialog

        layer = run_dialog(config, region)
        if layer is None:
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
        return _success(procedure, layer)

    try:
        opts = options.parse_options(config.get_property("sliders"), config.get_property("model"),
                                     config.get_property("refine-steps"), config.get_property("cost"))
    except options.OptionsError as e:
        return _bad_call(procedure, f"Anycost Face Edit: {e}.")

    Gimp.progress_init("Anycost Face Edit")
    try:
        rgba, notice = edit_region(region, opts, progress=_progress)
        layer = canvas.add_result_layer(region, rgba, edit_layer_name(opts.sliders))
    except ArgumentError as e:
        return _bad_call(procedure, f"Anycost Face Edit: {e}.")
    except (EditError, canvas.CanvasError) as e:
        return _fail(procedure, f"Anycost Face Edit: {e}")
    finally:
        Gimp.progress_end()
    if notice:  # e.g. no face found: the alignment fell back to a centred crop
        _tell(run_mode, f"Anycost Face Edit: {notice}")
    return _success(procedure, layer)


def _tell(run_mode, text: str) -> None:
    """A notice for people: a message in GIMP's interface after Filters ▸ Repeat, stderr for scripts and
    batch jobs (where a message could pop up a dialog that waits for a click)."""
    if run_mode == Gimp.RunMode.WITH_LAST_VALS:
        Gimp.message(text)
    else:
        print(text, file=sys.stderr, flush=True)


def _progress(text: str, fraction: float | None) -> None:
    Gimp.progress_set_text(text)
    if fraction is None:
        Gimp.progress_pulse()
    else:
        Gimp.progress_update(max(0.0, min(1.0, fraction)))


class AnycostFaceEdit(Gimp.PlugIn):
    def do_set_i18n(self, _name):
        return False, None, None

    def do_query_procedures(self):
        return [PROC_NAME]

    def do_create_procedure(self, name):
        Gegl.init(None)
        proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        proc.set_image_types("RGB*")
        proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        proc.set_menu_label("Anycost Face Edit…")
        proc.add_menu_path("<Image>/Filters")
        proc.set_documentation(
            "Edit a face with an Anycost GAN (smile, age, hair, …)",
            "Projects the face in the selection (or the whole layer) into an Anycost generator, moves it "
            "along the chosen edit directions and adds the result as a new layer above the layer. Needs a "
            "running Anycost backend ('anycost serve') or one configured to start. Sliders are given as "
            "'name=value,…' (at least one non-zero); the names come from the backend's model.",
            name)
        proc.set_attribution("Anycost Face Edit", "Anycost Face Edit contributors", "2025")
        flags = GObject.ParamFlags.READWRITE
        proc.add_string_argument("sliders", "_Sliders", "Edit sliders as 'name=value,…' (e.g. 'smile=0.5,age=-0.3')",
                                 "", flags)
        proc.add_string_argument("model", "_Model", "Model to edit with (name or file; a backend the plug-in starts "
                                 "serves it); empty for the running backend's model", "", flags)
        proc.add_int_argument("refine-steps", "_Refinement steps",
                              "Optimisation steps after the encoder (more: closer likeness, slower)",
                              0, 1000, 0, flags)
        proc.add_string_argument("cost", "_Cost", "Render cost of the result: 'full', 'preview' or RES:RATIO",
                                 "full", flags)
        # not an argument of the call: which GIMP session applied the stored sliders (see face_edit_ui.dialog_sliders)
        proc.add_string_aux_argument("gimp-session", "GIMP session", "The GIMP session whose dialog last applied "
                                     "the stored sliders", "", flags)
        proc.add_layer_return_value("layer", "Layer", "The new layer holding the edited region", False, flags)
        return proc


if __name__ == "__main__":
    Gimp.main(AnycostFaceEdit.__gtype__, sys.argv)
