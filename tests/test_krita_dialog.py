"""The Krita plugin's Qt dialog on PyQt5 (Krita 5) and PyQt6 (Krita 6), without Krita: the system Python
with PyQt (what Debian's Krita runs), offscreen, driving the real dialog against a real backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from service_support import Backend, make_directions

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"


def _system_python_has(module: str) -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    code = f"import sys, {module}; print(sys.version_info[:2])"
    r = subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip() == str(tuple(sys.version_info[:2]))


@pytest.fixture(scope="module")
def backend(tmp_path_factory, official_fixture):
    tmp = tmp_path_factory.mktemp("dialog")
    model = official_fixture / "generator.pt"
    b = Backend(tmp, model, make_directions(model, tmp / "dirs.safetensors"))
    yield b
    b.stop()


@pytest.mark.parametrize("qt", ["5", "6"])
def test_dialog_runs_on_pyqt(qt, backend, tmp_path):
    module = f"PyQt{qt}.QtWidgets"
    if not _system_python_has(module):
        pytest.skip(f"PyQt{qt} IS NOT INSTALLED for {SYSTEM_PYTHON} (same version as this Python): "
                    f"apt-get install python3-pyqt{qt} (.ci/run installs it)")
    # the system Python gets this environment's pyzmq/msgpack (same CPython version) and nothing else of it
    deps = tmp_path / "deps"
    deps.mkdir()
    import msgpack
    import zmq

    for mod in (zmq, msgpack):
        pkg = Path(mod.__file__).parent
        (deps / pkg.name).symlink_to(pkg)
    libs = Path(zmq.__file__).parent.parent / "pyzmq.libs"
    if libs.exists():
        (deps / libs.name).symlink_to(libs)
    out = tmp_path / "result.json"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen",
           "PYTHONPATH": os.pathsep.join([str(REPO / "plugin" / "krita"), str(REPO / "plugin"), str(deps)])}
    p = subprocess.run([SYSTEM_PYTHON, str(REPO / "tests" / "hosts" / "krita_dialog_qt.py"), qt, str(backend.conn),
                        str(out), str(tmp_path / "dialog.png")], env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["qt6"] == (qt == "6")
    assert r["sliders"] == ["sefa_0", "sefa_1", "sefa_2"] and r["quality_items"] > 2
    assert r["slider_value"] == 0.5 and "ms" in r["latency_label"] and r["thumbnail_updates"] >= 2
    assert r["apply_enabled"] and r["after_reset"] == 0.0
    # a noise region has no face: Apply asked first, saying why, and applied on "Yes"
    assert r["confirm_apply"] and len(r["confirm_asked"]) == 1
    assert "no face" in r["confirm_asked"][0] and "Apply the edit anyway?" in r["confirm_asked"][0]
    # the projection is refined in 5 steps: the bar rises through them, never back, and is full when ready
    shown = [v for top, v in r["progress"] if top == 100 and v >= 0]
    assert any(0 < v < 100 for v in shown), r["progress"]
    assert shown == sorted(shown) and shown[-1] == 100, r["progress"]
    assert r["progress_at_ready"] == [100, 100]
    assert r["reset_all"]["before"] == [0.0, 0.7, -0.3]
    assert r["reset_all"]["after"] == [0.0, 0.0, 0.0] and r["reset_all"]["positions"] == [0, 0, 0], "Reset all"
    assert "chosen for the" in r["preview_choice"] and not r["retry_visible"]
    # laid out from the first frame: neither the first latency figure nor any status text resizes it
    assert r["latency_before"] == "–" and "ms" in r["latency_label"]
    assert r["size_after_preview"] == r["size_shown"] == r["size_end"], r
    assert all(size == r["size_shown"] for size in r["sizes"]), f"the dialog resized itself: {r['sizes']}"

    # a hung backend (SIGSTOP) is named within seconds, once, with Retry, and nothing moves under the pointer
    hung = r["hung"]
    assert hung["after_s"] < 6, hung
    assert f"The backend does not answer (pid {hung['pid']}, stopped)" in hung["status"], hung
    assert hung["status"].count("does not answer") == 1, "said once"
    assert hung["retry_visible"] and hung["phase"] == "ready" and hung["cancel_text"] == "Cancel"
    assert not hung["apply_moved"], "Retry appearing moved Apply"
    # it answers again: the edit goes on by itself (no Retry needed), the slider moved meanwhile is shown
    after = r["after_hang"]
    assert not after["retry_visible"] and after["status"] == "Ready" and after["sessions_opened"] == 1
    assert (tmp_path / "dialog.png").stat().st_size > 10_000

    # small and tall screens: the dialog fits, opens at the right edge of Krita's window, the sliders scroll,
    # Apply, Cancel, the status and the quality and latency rows are on the screen; where the user leaves
    # it is where it opens next time, kept on the screen
    for name, s in r["screens"].items():
        assert s["rows"] == 24 and s["scrolls"], (name, s)
        assert s["fits"] and all(s["on_screen"].values()), (name, s)
        assert s["right_edge"], (name, s)
        assert s["position"] == [200, 20], (name, s)
        # as tall as the small screen allows: pulled up so that its bottom stays on the screen
        assert s["reopened_at"] == ([200, 0] if name == "1024x600" else [200, 20]), (name, s)
        width = int(name.split("x")[0]) if "x" in name else 1600
        assert s["clamped"][1] == 0 and s["clamped"][0] + s["size"][0] == width, (name, s)
    heights = {name: s["size"][1] for name, s in r["screens"].items()}
    assert heights["1366x768"] <= 768 - 40 - 30 and heights["1024x600"] <= 600 - 40 - 30, heights
    assert heights["1024x600"] < heights["1000 tall"], f"a small screen: fewer rows, not off the screen: {heights}"
    assert r["phase"] == "done" and r["results"] == ["Anycost Face Edit (sefa_0 -0.40)"]
    assert r["dialog_result"] == 1, "accepted"
