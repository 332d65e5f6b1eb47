"""The GIMP plug-in's pure-Python parts (argument parsing, progress text, reaching the backend) and its
installer, outside GIMP. The plug-in in a real GIMP 3 is tests/test_gimp_e2e.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN_DIR = REPO / "plugin" / "gimp" / "anycost_face_edit"
sys.path.insert(0, str(PLUGIN_DIR))

import face_edit_backend  # noqa: E402
import face_edit_options as opts  # noqa: E402
from anycost_installers import gimp as gimp_installer  # noqa: E402
from face_edit_session import progress_text  # noqa: E402
from face_edit_ui import cost_label, fit_size, sliders_text  # noqa: E402
from service_support import make_directions  # noqa: E402

from anycost_client import backend_launcher  # noqa: E402

DIRECTIONS = {"smile": {"range": [-1.0, 1.0]}, "age": {"range": [-2.0, 0.5]}}


def test_sliders_parse_from_a_string():
    assert opts.parse_sliders("smile=0.5, age=-0.3") == {"smile": 0.5, "age": -0.3}
    assert opts.parse_sliders("smile=1;age=-1e-1\nhair_color=+.25") == {"smile": 1.0, "age": -0.1,
                                                                       "hair_color": 0.25}
    assert opts.parse_sliders("  ") == {}


@pytest.mark.parametrize("text, needle", [
    ("smile", "name=value"), ("=0.5", "name=value"), ("smile=big", "not a number"),
    ("smile=nan", "finite"), ("smile=0.1,smile=0.2", "twice"),
])
def test_bad_slider_strings_say_what_is_wrong(text, needle):
    with pytest.raises(opts.OptionsError, match=needle):
        opts.parse_sliders(text)


def test_sliders_are_checked_against_the_backends_directions():
    opts.check_sliders({"smile": 1.0, "age": -2.0}, DIRECTIONS)
    with pytest.raises(opts.OptionsError, match=r"unknown slider 'glasses'.*age, smile"):
        opts.check_sliders({"glasses": 0.1}, DIRECTIONS)
    with pytest.raises(opts.OptionsError, match=r"outside its range \[-2, 0.5\]"):
        opts.check_sliders({"age": 0.6}, DIRECTIONS)


def test_costs_and_refinement_steps():
    for good in ("full", "preview", "256:0.5", "64:1", "1024:1.0", " full "):
        assert opts.check_cost(good) == good.strip()
    assert opts.check_cost("") == "full"
    for bad in ("fast", "256", "256:2", "x:0.5", "256:-1"):
        with pytest.raises(opts.OptionsError, match="cost"):
            opts.check_cost(bad)
    o = opts.parse_options("smile=0.2", " anycost-demo ", 5, "64:0.5")
    assert (o.sliders, o.model, o.refine_steps, o.cost) == ({"smile": 0.2}, "anycost-demo", 5, "64:0.5")
    with pytest.raises(opts.OptionsError, match="refine-steps"):
        opts.parse_options("", refine_steps=-1)


def test_progress_text():
    assert progress_text("refine", 5, 20) == ("Refining the projection (5/20)…", 0.25)
    assert progress_text("align", None, None) == ("Finding the face…", None)
    assert progress_text("something-new", 1, 2)[0] == "Working…"


def test_dialog_helpers():
    assert fit_size(720, 360, 360) == (360, 180) and fit_size(100, 50, 360) == (100, 50)
    assert cost_label("256:0.5") == "256 px, 50% channels" and cost_label("full").startswith("Full")
    assert sliders_text({"smile": 0.5, "age": 0.0, "hair": -0.25}) == "smile=0.5,hair=-0.25"
    assert opts.parse_sliders(sliders_text({"smile": 0.123456})) == {"smile": 0.123456}


def test_no_backend_gives_a_message_that_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("ANYCOST_CONNECTION_FILE", raising=False)
    monkeypatch.delenv("ANYCOST_BACKEND_COMMAND", raising=False)
    with pytest.raises(face_edit_backend.BackendUnavailable, match=r"anycost serve.*no backend command"):
        face_edit_backend.connect_backend(timeout=5)


def test_a_configured_backend_is_started_and_left_running_for_the_next_call(tmp_path, monkeypatch,
                                                                            official_fixture):
    """Each GIMP plug-in call is its own process: the first one starts the configured backend, which
    outlives it; the next one finds it through its connection file."""
    model = official_fixture / "generator.pt"
    dirs = make_directions(model, tmp_path / "dirs.safetensors")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("ANYCOST_CONNECTION_FILE", raising=False)
    monkeypatch.setenv("ANYCOST_BACKEND_COMMAND", f"{sys.executable} -m anycost serve --model {model} "
                                                  f"--directions {dirs} --no-lpips")
    client = face_edit_backend.connect_backend(timeout=30)
    conn_file = tmp_path / "anycost" / "backend-gimp.json"
    pid = json.loads(conn_file.read_text())["pid"]
    try:
        assert set(client.welcome["directions"]) == {"sefa_0", "sefa_1", "sefa_2"}
        client.close()
        client = face_edit_backend.connect_backend(timeout=30)  # the next call: the same backend
        assert client.ping()["server_time"] > 0 and json.loads(conn_file.read_text())["pid"] == pid
    finally:
        client.close()
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while conn_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    assert not conn_file.exists(), "the started backend stops cleanly on SIGTERM"


def test_a_silent_backend_is_reported_with_its_connection_file(tmp_path, monkeypatch):
    # A live pid (ours) and an endpoint where nothing answers: a stale or hung backend.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = tmp_path / "anycost" / f"backend-{os.getpid()}.json"
    conn.parent.mkdir()
    conn.write_text(json.dumps({"endpoint": f"tcp://127.0.0.1:{port}", "key": "00" * 32, "pid": os.getpid()}))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setattr(face_edit_backend, "CONNECT_TIMEOUT", 0.5)
    with pytest.raises(face_edit_backend.BackendUnavailable, match=rf"did not answer.*{conn.name}"):
        face_edit_backend.connect_backend(timeout=5)


# ---------------------------------------------------------------------- installer
def test_default_plug_ins_dir_per_platform(tmp_path):
    home = tmp_path
    f = gimp_installer.default_plug_ins_dir
    assert f("linux", {}, home) == home / ".config" / "GIMP" / "3.0" / "plug-ins"
    assert f("linux", {"XDG_CONFIG_HOME": "/x"}, home) == Path("/x/GIMP/3.0/plug-ins")
    assert f("darwin", {}, home) == home / "Library" / "Application Support" / "GIMP" / "3.0" / "plug-ins"
    assert f("win32", {"APPDATA": "C:/Users/a/AppData/Roaming"}, home) == \
        Path("C:/Users/a/AppData/Roaming/GIMP/3.0/plug-ins")
    assert f("linux", {"GIMP3_DIRECTORY": "/g"}, home) == Path("/g/plug-ins")


def test_install_lays_out_what_gimp_registers_and_uninstall_removes_it(tmp_path):
    plug_ins = tmp_path / "plug-ins"
    command = ["/opt/py", "-m", "anycost", "serve"]
    report = gimp_installer.install(plug_ins, vendor_wheels=False, backend_command=command)
    dest = report.plugin_dir
    assert dest == plug_ins / "anycost_face_edit"
    main = dest / "anycost_face_edit.py"  # folder name == file name, executable: GIMP 3 registers it
    assert main.stat().st_mode & stat.S_IXUSR and main.read_text().startswith("#!/usr/bin/env python3")
    assert (dest / "anycost_client" / "protocol.py").is_file() and (dest / "face_edit_canvas.py").is_file()
    assert not list(dest.rglob("__pycache__")) and not (dest / "vendor").exists()
    assert sorted(p.name for p in plug_ins.iterdir()) == ["anycost_face_edit"], "no staging leftovers"
    # the plug-in finds the backend command the installer recorded
    assert backend_launcher.configured_command() == command
    assert json.loads((dest / "INSTALL.json").read_text())["backend_command"][0] == "/opt/py"

    # Reinstalling replaces the folder (a stale file from an older version disappears).
    (dest / "stale.py").write_text("")
    gimp_installer.install(plug_ins, vendor_wheels=False)
    assert not (dest / "stale.py").exists() and main.is_file()

    assert gimp_installer.uninstall(plug_ins) == [dest]
    assert not dest.exists()
    assert gimp_installer.uninstall(plug_ins) == []


def test_uninstall_refuses_a_folder_that_is_not_the_plugin(tmp_path):
    foreign = tmp_path / "anycost_face_edit"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(gimp_installer.InstallError, match="does not look like this plug-in"):
        gimp_installer.uninstall(tmp_path)
    assert (foreign / "notes.txt").exists()


def test_gimps_bundled_python_is_found_in_its_install_folder(tmp_path):
    win = tmp_path / "GIMP 3"
    (win / "lib" / "python3.12" / "site-packages").mkdir(parents=True)
    assert gimp_installer.detect_gimp_python(win) == ("3.12", str(win))
    app = tmp_path / "GIMP.app"
    (app / "Contents" / "Frameworks" / "Python.framework" / "Versions" / "3.11").mkdir(parents=True)
    assert gimp_installer.detect_gimp_python(app)[0] == "3.11"
    assert gimp_installer.detect_gimp_python(tmp_path / "nothing") is None
    with pytest.raises(gimp_installer.InstallError, match="--python-version"):
        gimp_installer.install(tmp_path / "p", vendor_wheels=True, gimp=tmp_path / "nothing")


def test_cli_install_and_uninstall(tmp_path):
    plug_ins = tmp_path / "plug-ins"
    env = {**os.environ, "PYTHONPATH": ""}
    done = subprocess.run([sys.executable, "-m", "anycost", "install", "gimp", "--plug-ins-dir", str(plug_ins),
                           "--no-vendor"], capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "installed the GIMP plug-in into" in done.stdout and (plug_ins / "anycost_face_edit").is_dir()
    done = subprocess.run([sys.executable, "-m", "anycost", "uninstall", "gimp", "--plug-ins-dir", str(plug_ins)],
                          capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode == 0 and "removed" in done.stdout and not (plug_ins / "anycost_face_edit").exists()
