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

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN_DIR = REPO / "plugin" / "gimp" / "anycost_face_edit"
sys.path.insert(0, str(PLUGIN_DIR))

import face_edit_options as opts  # noqa: E402
import face_edit_paths  # noqa: E402
from anycost_installers import gimp as gimp_installer  # noqa: E402
from anycost_installers import wheels  # noqa: E402
from face_edit_session import CLIENT_NAME, HOST, progress_text  # noqa: E402
from face_edit_ui import cost_label, fit_size, sliders_text  # noqa: E402
from service_support import make_directions  # noqa: E402
from test_krita_installer import PLAT_TAGS, _wheel  # noqa: E402

from anycost_client import backend_launcher, oneshot  # noqa: E402
from anycost_client.regions import Rect, Region, result_layer_pixels  # noqa: E402


def test_sliders_parse_from_a_string():
    assert opts.parse_sliders("smile=0.5, age=-0.3") == {"smile": 0.5, "age": -0.3}
    assert opts.parse_sliders("smile=1;age=-1e-1\nhair_color=+.25") == {"smile": 1.0, "age": -0.1,
                                                                       "hair_color": 0.25}
    assert opts.parse_sliders(" smile = 0.5 ;\r\n age =-0.3, ") == {"smile": 0.5, "age": -0.3}
    assert opts.parse_sliders("  ") == {}


@pytest.mark.parametrize("text, needle", [
    ("smile", "name=value"), ("=0.5", "name=value"), ("smile=big", "not a number"),
    ("smile=nan", "finite"), ("smile=0.1,smile=0.2", "twice"), ("smile=0.5 age=0.1", "separate them with commas"),
])
def test_bad_slider_strings_say_what_is_wrong(text, needle):
    with pytest.raises(opts.OptionsError, match=needle):
        opts.parse_sliders(text)


def test_costs_and_refinement_steps():
    """Only the form of a cost is the plug-in's to check; which resolutions and ratios the model takes is
    the backend's (test_the_backend_refuses_a_wrong_slider_or_cost_as_a_calling_error)."""
    for good in ("full", "preview", "256:0.5", "64:1", "1024:1.0", " full ", "8:.25", "4096:0.75", "300:0.5",
                 "256:2", "0:0.5"):
        assert opts.check_cost(good) == good.strip()
    assert opts.check_cost("") == "full"
    for bad in ("fast", "256", "x:0.5", "256:-1", "256:1e-3", "256:0.5:1", "123456:1"):
        with pytest.raises(opts.OptionsError, match="is not 'full', 'preview' or RES:RATIO"):
            opts.check_cost(bad)
    o = opts.parse_options("smile=0.2", " anycost-demo ", 5, "64:0.5")
    assert (o.sliders, o.model, o.refine_steps, o.cost) == ({"smile": 0.2}, "anycost-demo", 5, "64:0.5")
    with pytest.raises(opts.OptionsError, match="refine-steps"):
        opts.parse_options("smile=1", refine_steps=-1)


@pytest.mark.parametrize("sliders", ["", "  ", "smile=0", "smile=0, age=-0.0"])
def test_a_call_that_moves_no_slider_is_refused(sliders):
    """An unedited projection is not what a script asks for: most likely an empty or misspelt argument."""
    with pytest.raises(opts.OptionsError, match=r"no slider moves.*smile=0.5"):
        opts.parse_options(sliders)


def test_the_result_layer_is_transparent_where_nothing_changed():
    """On a 16-bit or linear image an opaque 8-bit copy would round untouched pixels: the layer shows only
    what the edit changed, inside the selection."""
    original = bytes([10, 20, 30, 255, 1, 2, 3, 128, 50, 60, 70, 255, 9, 9, 9, 0])
    result = bytes([10, 20, 30, 255, 1, 2, 4, 128, 51, 60, 70, 255, 9, 9, 9, 0])
    assert result_layer_pixels(result, original) == bytes([10, 20, 30, 0, 1, 2, 4, 128, 51, 60, 70, 255, 9, 9, 9, 0])
    # outside the selection (mask 0) transparent even where the backend changed something
    assert result_layer_pixels(result, original, bytes([255, 255, 0, 255])) == \
        bytes([10, 20, 30, 0, 1, 2, 4, 128, 51, 60, 70, 0, 9, 9, 9, 0])
    assert result_layer_pixels(result, original, bytes([255, 7, 1, 255]))[7::8] == bytes([128, 0])
    with pytest.raises(ValueError, match="same whole number"):
        result_layer_pixels(result[:-4], original)
    with pytest.raises(ValueError, match="mask has 3 pixels"):
        result_layer_pixels(result, original, bytes(3))


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
    with pytest.raises(oneshot.BackendUnavailable,
                       match=r"anycost serve.*no backend command.*run 'anycost install gimp' from the backend's"):
        oneshot.connect_backend(HOST, CLIENT_NAME, timeout=5)


def test_a_configured_backend_is_started_with_the_model_and_left_running_for_the_next_call(tmp_path, monkeypatch,
                                                                                           official_fixture):
    """Each GIMP plug-in call is its own process: the first one starts the configured backend (with the
    ``model`` argument as ``--model``), which outlives it; the next one finds it through its connection
    file, and a call asking for another model is told which model runs."""
    model = official_fixture / "generator.pt"
    dirs = make_directions(model, tmp_path / "dirs.safetensors")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("ANYCOST_CONNECTION_FILE", raising=False)
    # no --model in the configured command: the plug-in's model argument must reach the backend
    monkeypatch.setenv("ANYCOST_BACKEND_COMMAND", f"{sys.executable} -m anycost serve --directions {dirs} --no-lpips")
    client = oneshot.connect_backend(HOST, CLIENT_NAME, timeout=30, model=str(model))
    conn_file = tmp_path / "anycost" / "backend-gimp.json"
    pid = json.loads(conn_file.read_text())["pid"]
    try:
        served = oneshot.served_model(client.welcome)
        assert served and oneshot.model_matches(str(model), served)
        assert set(client.welcome["directions"]) == {"sefa_0", "sefa_1", "sefa_2"}
        log = (tmp_path / "state" / "anycost" / "backend-gimp.log").read_text()
        assert f"--model {model}" in log
        client.close()
        client = oneshot.connect_backend(HOST, CLIENT_NAME, timeout=30, model=served)  # the next call: the same one
        assert client.ping()["server_time"] > 0 and json.loads(conn_file.read_text())["pid"] == pid
        client.close()
        with pytest.raises(oneshot.BackendUnavailable,
                           match=rf"pid {pid}\) serves model '{served}', not 'other-model'.*--model other-model"):
            oneshot.connect_backend(HOST, CLIENT_NAME, timeout=30, model="other-model")
        client = oneshot.connect_backend(HOST, CLIENT_NAME, timeout=30)  # no model asked for: any will do
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
    from anycost_client.connection_file import process_tag

    conn = tmp_path / "anycost" / f"backend-{os.getpid()}.json"
    conn.parent.mkdir(mode=0o700)
    # private, and naming this very process (the tag): a backend of this user as far as discovery can tell
    conn.write_text(json.dumps({"endpoint": f"tcp://127.0.0.1:{port}", "key": "00" * 32, "pid": os.getpid(),
                                "process": process_tag(os.getpid())}))
    os.chmod(conn, 0o600)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setattr(oneshot, "CONNECT_TIMEOUT", 0.5)
    with pytest.raises(oneshot.BackendUnavailable, match=rf"did not answer.*{conn.name}"):
        oneshot.connect_backend(HOST, CLIENT_NAME, timeout=5)


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


def _path_setup_imports(folder: Path) -> dict:
    """What the installed plug-in's path setup makes ``python -I`` import (no GIMP needed): where zmq,
    msgpack and the client package come from."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import face_edit_paths; "
            "added = face_edit_paths.add_bundled_paths(); import zmq, msgpack, anycost_client; "
            "print(json.dumps({'added': added, 'zmq': zmq.__file__, 'msgpack': msgpack.__file__, "
            "'client': anycost_client.__file__, 'built_for': getattr(zmq, 'BUILT_FOR', None)}))")
    done = subprocess.run([sys.executable, "-I", "-c", code, str(folder)], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_vendored_wheels_are_what_the_installed_plugin_imports(tmp_path):
    """``--vendor`` for this Python: the wheels land in vendor/<key> and the plug-in's own path setup puts
    that folder before everything else, so zmq and msgpack come from it (not from this environment)."""
    target = wheels.host_target()
    version = target.python_version
    wheel_dir = Path(os.environ.get("ANYCOST_WHEEL_DIR") or tmp_path / "wheels")  # real wheels where offered
    if not os.environ.get("ANYCOST_WHEEL_DIR"):
        wheel_dir.mkdir()
        py = f"cp{version.replace('.', '')}"
        _wheel(wheel_dir, "pyzmq", "zmq", "27.1.0", py, PLAT_TAGS[target.platform])
        _wheel(wheel_dir, "msgpack", "msgpack", "1.1.0", py, PLAT_TAGS[target.platform])
    report = gimp_installer.install(tmp_path / "plug-ins", vendor_wheels=True, python_version=version,
                                    wheel_dir=wheel_dir, download=False, backend_command=["/opt/py"],
                                    log=lambda *_: None)
    vendor = report.plugin_dir / "vendor" / target.key
    assert vendor.is_dir() and sorted(w.split("-")[0] for w in report.vendored) == ["msgpack", "pyzmq"], report
    assert json.loads((report.plugin_dir / "INSTALL.json").read_text())["vendor"] == target.key
    got = _path_setup_imports(report.plugin_dir)
    assert got["added"] == [str(vendor), str(report.plugin_dir)]
    assert Path(got["zmq"]).is_relative_to(vendor) and Path(got["msgpack"]).is_relative_to(vendor), got
    assert Path(got["client"]).is_relative_to(report.plugin_dir / "anycost_client"), got
    if not os.environ.get("ANYCOST_WHEEL_DIR"):
        assert got["built_for"].startswith(f"cp{version.replace('.', '')}-")


@pytest.mark.parametrize("system, machine", [
    ("linux", "x86_64"), ("linux", "AMD64"), ("linux", "aarch64"), ("linux", "arm64"), ("win32", "AMD64"),
    ("win32", "x86_64"), ("win32", "ARM64"), ("darwin", "arm64"), ("darwin", "x86_64"),
])
@pytest.mark.parametrize("version", ["3.8", "3.10", "3.12", "3.13"])
def test_the_plugin_and_the_installers_agree_on_the_vendor_folder(system, machine, version, monkeypatch):
    """The GIMP plug-in picks its vendor folder with its own (standard-library) copy of the rule; it must
    name the folder the installer writes, and the one the Krita plugin picks."""
    import importlib.util
    import platform

    spec = importlib.util.spec_from_file_location(
        "krita_vendor_paths", REPO / "plugin" / "krita" / "anycost_face_edit" / "vendor_paths.py")
    krita = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(krita)
    major, minor = (int(p) for p in version.split("."))
    gimp_key = face_edit_paths.vendor_key((major, minor), system, machine)
    assert gimp_key == krita.vendor_key(version, krita.platform_key(system, machine))
    monkeypatch.setattr(sys, "platform", system)
    monkeypatch.setattr(platform, "machine", lambda: machine)
    assert gimp_key == wheels.Target(version, wheels.host_target().platform).key


def test_link_install_points_at_the_sources(tmp_path):
    """``link`` (development): a real folder of links to the sources, so edits show up after a GIMP restart
    and vendor/ stays out of the checkout; the main file is executable through its link."""
    report = gimp_installer.install(tmp_path / "plug-ins", link=True, vendor_wheels=False, backend_command=["/x"])
    dest = report.plugin_dir
    assert report.linked and not dest.is_symlink() and dest.is_dir()
    main = dest / "anycost_face_edit.py"
    assert main.is_symlink() and main.resolve() == PLUGIN_DIR / "anycost_face_edit.py"
    assert os.access(main, os.X_OK), "GIMP registers only an executable plug-in file"
    assert (dest / "face_edit_canvas.py").resolve() == PLUGIN_DIR / "face_edit_canvas.py"
    assert (dest / "anycost_client").resolve() == REPO / "plugin" / "anycost_client"
    assert json.loads((dest / "INSTALL.json").read_text())["linked"] is True
    got = _path_setup_imports(dest)
    assert Path(got["client"]).parent == dest / "anycost_client", "the client is found beside the plug-in"
    assert gimp_installer.uninstall(tmp_path / "plug-ins") == [dest]
    assert not dest.exists() and (PLUGIN_DIR / "anycost_face_edit.py").is_file(), "the sources stay"


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    """``anycost ARGS`` through the console command's own entry point, in this process (fast)."""
    from anycost.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_rejects_options_that_do_not_apply_and_contradictions(tmp_path, capsys):
    plug_ins = tmp_path / "plug-ins"
    for args, needle in [
        (("install", "gimp", "--pykrita-dir", "x"), "--pykrita-dir applies to Krita only, not to GIMP"),
        (("install", "gimp", "--kritarc", "x"), "--kritarc applies to Krita only"),
        (("install", "gimp", "--krita", "x"), "--krita applies to Krita only"),
        (("install", "krita", "--plug-ins-dir", "x"), "--plug-ins-dir applies to GIMP only, not to Krita"),
        (("install", "krita", "--vendor"), "--vendor applies to GIMP only"),
        (("install", "gimp", "--vendor", "--no-vendor"), "--vendor and --no-vendor contradict each other"),
        (("uninstall", "gimp", "--purge"), "--purge applies to Krita only"),
    ]:
        where = ("--plug-ins-dir" if args[1] == "gimp" else "--pykrita-dir", str(plug_ins))
        code, _, err = _cli(capsys, *args, *where)
        assert code != 0 and needle in err, (args, err)
    assert not plug_ins.exists(), "a rejected command changes nothing"


def test_cli_link_install(tmp_path, capsys):
    plug_ins = tmp_path / "plug-ins"
    code, out, err = _cli(capsys, "install", "gimp", "--plug-ins-dir", str(plug_ins), "--link", "--no-vendor")
    assert code == 0, err
    assert "installed the GIMP plug-in (linked) into" in out
    assert (plug_ins / "anycost_face_edit" / "face_edit_options.py").is_symlink()


def test_the_dialog_and_a_script_share_the_rule_that_a_slider_must_move():
    """Apply in the dialog stays disabled until this holds, so Filters ▸ Repeat never stores an empty edit."""
    assert not opts.moves_a_slider({}) and not opts.moves_a_slider({"smile": 0.0, "age": -0.0})
    assert opts.moves_a_slider({"smile": 0.0, "age": 1e-4})
    for sliders in ({"smile": 0.0}, {"smile": 0.0, "age": -0.3}):
        # what the dialog stores as last values is what a repeated call accepts exactly when Apply was allowed
        text = sliders_text(sliders)
        if opts.moves_a_slider(sliders):
            assert opts.parse_options(text).sliders == {k: v for k, v in sliders.items() if v}
        else:
            with pytest.raises(opts.OptionsError, match="no slider moves"):
                opts.parse_options(text)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("args, needle", [
    (("--vendor", "--python-version", "312", "--offline"), "python version must look like 3.11, got '312'"),
    (("--platform", "beos", "--python-version", "3.12"), "unknown platform 'beos'"),
    (("--vendor", "--platform", "beos", "--python-version", "3.12"), "unknown platform 'beos'"),
])
def test_cli_bad_vendor_target_is_a_clean_error_that_changes_nothing(tmp_path, capsys, args, needle):
    plug_ins = tmp_path / "plug-ins"
    gimp_installer.install(plug_ins, vendor_wheels=False, backend_command=["/opt/py"])
    before = _tree(plug_ins)
    code, out, err = _cli(capsys, "install", "gimp", "--plug-ins-dir", str(plug_ins), *args)
    assert code != 0 and err.startswith("anycost: error: ") and needle in err, err
    assert "Traceback" not in err + out
    assert _tree(plug_ins) == before, "the earlier install is untouched"


@pytest.mark.parametrize("args", [("--gimp", "/nonexistent"), ("--wheel-dir", "/nope"), ("--offline",),
                                  ("--no-vendor", "--python-version", "3.12"), ("--platform", "linux_x86_64")])
def test_cli_refuses_vendoring_options_when_nothing_is_vendored(tmp_path, capsys, args, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")  # where GIMP runs plug-ins with the system python3
    plug_ins = tmp_path / "plug-ins"
    code, out, err = _cli(capsys, "install", "gimp", "--plug-ins-dir", str(plug_ins), *args)
    assert code != 0, out
    assert f"anycost: error: {' '.join(a for a in args if a != '--no-vendor')}: " in err, err
    assert "nothing is vendored here; add --vendor" in err
    assert not plug_ins.exists(), "a refused command changes nothing"


def test_install_refuses_to_replace_a_folder_that_is_not_the_plugin(tmp_path):
    """The same rule as uninstall: a folder without anycost_face_edit.py or INSTALL.json belongs to someone else."""
    foreign = tmp_path / "anycost_face_edit"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(gimp_installer.InstallError, match="does not look like this plug-in.*not replacing it"):
        gimp_installer.install(tmp_path, vendor_wheels=False, backend_command=["/opt/py"])
    assert _tree(tmp_path) == {"anycost_face_edit/notes.txt": b"mine"}, "nothing added, nothing removed"
    # A damaged install (its main file gone, its record left) is ours: replaced, and removable.
    (foreign / "notes.txt").unlink()
    (foreign / "INSTALL.json").write_text("{}")
    report = gimp_installer.install(tmp_path, vendor_wheels=False, backend_command=["/opt/py"])
    assert (report.plugin_dir / "anycost_face_edit.py").is_file()
    (report.plugin_dir / "anycost_face_edit.py").unlink()
    assert gimp_installer.uninstall(tmp_path) == [report.plugin_dir] and not report.plugin_dir.exists()


def test_a_failed_final_rename_puts_the_earlier_install_back(tmp_path, monkeypatch):
    plug_ins = tmp_path / "plug-ins"
    dest = gimp_installer.install(plug_ins, vendor_wheels=False, backend_command=["/opt/old"]).plugin_dir
    before = _tree(plug_ins)
    real_rename = Path.rename

    def rename(self, target):
        if self.name == ".anycost_face_edit.installing":  # the step that puts the new install in place
            raise PermissionError(13, "Permission denied", str(self))
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(gimp_installer.InstallError, match="cannot install the GIMP plug-in.*Permission denied"):
        gimp_installer.install(plug_ins, vendor_wheels=False, backend_command=["/opt/new"])
    assert _tree(plug_ins) == before, "the earlier install is back in place, nothing left over"
    assert json.loads((dest / "INSTALL.json").read_text())["backend_command"] == ["/opt/old"]


# ---------------------------------------------------------------------- a backend that dies mid-call
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_backend_that_dies_mid_call_ends_the_call_within_seconds_naming_its_log(tmp_path, monkeypatch,
                                                                                  official_fixture, sig):
    """A one-shot call waits up to 300 s for an answer; a backend killed (or stopped) by its pid while the
    call waits must end the call within seconds, with a message that says it died or stopped and names its
    log, not 'no answer within 300 s'. A real backend, killed while it refines the projection."""
    from face_edit_session import EditError, edit_region
    from service_support import Backend

    model = official_fixture / "generator.pt"
    backend = Backend(tmp_path, model, make_directions(model, tmp_path / "dirs.safetensors"))
    monkeypatch.setenv("ANYCOST_CONNECTION_FILE", str(backend.conn))
    pid = backend.proc.pid
    rng = np.random.default_rng(3)
    region = Region(Rect(0, 0, 40, 48), rng.integers(0, 256, (48, 40, 4), dtype=np.uint8).tobytes())
    killed: list[float] = []

    def progress(text: str, _fraction) -> None:
        if text.startswith("Refining") and not killed:  # the backend is busy with this call: kill it now
            os.kill(pid, sig)
            killed.append(time.monotonic())

    try:
        with pytest.raises(EditError) as caught:
            edit_region(region, opts.parse_options("sefa_0=0.5", refine_steps=1000), progress, timeout=300)
        took = time.monotonic() - killed[0]
    finally:
        code = backend.stop()
    message = str(caught.value)
    print(f"{sig.name}: the call failed {took:.1f} s later: {message}")
    assert killed, "the backend never reported refinement progress"
    assert took < 15, f"the call noticed the {sig.name} only after {took:.1f} s: {message}"
    assert f"pid {pid}" in message and str(backend.log) in message, message
    assert ("died" if sig == signal.SIGKILL else "stopped") in message, message
    assert "within 300 s" not in message
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL


def test_the_backend_refuses_a_wrong_slider_or_cost_as_a_calling_error(tmp_path, monkeypatch, official_fixture):
    """Sliders, their ranges and the costs a model renders at are checked by the backend alone: a real
    backend refuses them ('bad_input', a message naming the slider and its range, or the costs it takes)
    before the region is sent, and the one-shot call raises ArgumentError (GIMP's CALLING_ERROR) with
    that message. A backend without the 'check' request refuses them at the commit: the same error."""
    from types import SimpleNamespace

    from face_edit_session import ArgumentError, edit_region
    from service_support import Backend

    from anycost_client.client import Client

    model = official_fixture / "generator.pt"
    backend = Backend(tmp_path, model, make_directions(model, tmp_path / "dirs.safetensors"))
    monkeypatch.setenv("ANYCOST_CONNECTION_FILE", str(backend.conn))
    rng = np.random.default_rng(5)
    region = SimpleNamespace(rgba=rng.integers(0, 256, (48, 40, 4), dtype=np.uint8).tobytes(), width=40, height=48,
                             mask=None)
    shown: list[str] = []

    def call(sliders: str, cost: str = "full") -> bytes:
        rgba, _notice = edit_region(region, opts.parse_options(sliders, cost=cost),
                                    lambda text, _f: shown.append(text), timeout=120)
        return rgba

    refusals = [
        ("no_such_slider=0.5", "full", "unknown slider 'no_such_slider'; valid sliders: sefa_0, sefa_1, sefa_2"),
        ("sefa_0=0.5, sefa_1=1.5", "full", "slider 'sefa_1' must be in [-1, 1], got 1.5"),
        ("sefa_0=0.5", "300:0.5", "cost resolution 300 is not one of [8, 16, 32, 64]"),
        ("sefa_0=0.5", "64:2", "channel ratio must be in (0, 1], got 2.0"),
    ]
    try:
        for sliders, cost, message in refusals:
            with pytest.raises(ArgumentError) as caught:
                call(sliders, cost)
            assert message in str(caught.value), (sliders, cost, str(caught.value))
        assert "Sending the region…" not in shown and not backend.events("session_opened"), \
            "refused before the region was sent"
        assert len(call("sefa_0=0.5", "32:0.5")) == 40 * 48 * 4, "what the backend takes, it edits"

        original = Client.welcome.fget
        monkeypatch.setattr(Client, "welcome", property(lambda c: {**original(c), "capabilities": ["open", "commit"]}))
        opened = len(backend.events("session_opened"))
        for sliders, cost, message in refusals[1:3]:
            with pytest.raises(ArgumentError) as caught:
                call(sliders, cost)
            assert message in str(caught.value), (sliders, cost, str(caught.value))
        assert len(backend.events("session_opened")) == opened + 2, "an older backend: refused at the commit"
    finally:
        assert backend.stop() == 0, "the backend lived through every refusal"


def test_the_watch_names_a_log_only_where_one_can_be_found(tmp_path, monkeypatch):
    """A backend a plug-in started logs to backend-HOST.log; another one's log is the file its stderr goes to."""
    from anycost_client.backend_watch import backend_log

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    log = tmp_path / "state" / "anycost" / "backend-gimp.log"
    log.parent.mkdir(parents=True)
    log.write_text("")
    assert backend_log(tmp_path / "backend-gimp.json", 1) == log
    with open(tmp_path / "err.log", "w") as err:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], stderr=err)
    try:
        assert backend_log(tmp_path / f"backend-{child.pid}.json", child.pid) == tmp_path / "err.log"
    finally:
        child.kill()
        child.wait()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], stderr=subprocess.PIPE)
    try:  # a pipe (or a terminal) is no log file
        assert backend_log(tmp_path / f"backend-{child.pid}.json", child.pid) is None
    finally:
        child.kill()
        child.communicate()


# ---------------------------------------------------------------------- the dialog's start and its texts
def test_the_dialog_starts_at_zero_in_a_new_gimp_session():
    """GIMP keeps a procedure's last values across sessions; the dialog takes the sliders from them only when
    they were applied in this GIMP session (the plug-in's parent process, its start time included)."""
    from face_edit_ui import dialog_sliders, gimp_session

    here = gimp_session()
    assert here == gimp_session(os.getppid()) and here != gimp_session(os.getpid())
    child = subprocess.run([sys.executable, "-c", "import sys; sys.path[:0] = sys.argv[1:]; import face_edit_ui; "
                            "print(face_edit_ui.gimp_session())", str(PLUGIN_DIR), str(REPO / "plugin")],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == gimp_session(os.getpid()), "a call's session is its parent process"
    stored = {"smile": 1.0, "age": 0.86}
    assert dialog_sliders(stored, here, here) == stored
    assert dialog_sliders(stored, gimp_session(os.getpid()), here) == {}
    assert dialog_sliders(stored, "", here) == {}, "values stored before sessions were recorded"


def test_the_dialogs_two_timings_say_what_each_measures():
    """'Preview: … 820 ms measured (budget 80 ms)' beside 'Preview latency 18 ms' read as a contradiction: the
    first is the backend's timing when it chose the Fast sub-generator, the second the newest preview as shown.
    Both dialogs take these texts from the shared controller."""
    from anycost_client.edit_controller import last_preview_text
    from anycost_client.edit_controller import preview_choice_text as fast_preview_text

    choice = {"preview": "128:flexible", "preview_flops": 3.2e9, "preview_ms": 820.4, "preview_predicted_ms": 37,
              "preview_source": "search", "preview_budget_ms": 80, "preview_fits": False}
    assert fast_preview_text(choice) == ("128:flexible · 3.2 GFLOP, chosen for the 80 ms budget (searched); 820 ms "
                                         "when the backend timed it, 37 ms predicted (nothing cheaper met the "
                                         "budget then)")
    assert fast_preview_text({**choice, "preview_fits": True, "preview_ms": 40}).endswith("40 ms when the backend "
                                                                                          "timed it, 37 ms predicted")
    assert fast_preview_text({"preview": "64:0.5", "preview_predicted_ms": 12}) == "64:0.5; 12 ms predicted"
    assert fast_preview_text({}) == ""
    assert last_preview_text(None, None, None, None) == "–"
    assert last_preview_text(18.2, 15.0, 1.2, "128:flexible") == \
        "18 ms from slider to picture (render 15 ms, drawing 1 ms) at 128:flexible"
    assert last_preview_text(18.2, None, None, "") == "18 ms from slider to picture"


# ---------------------------------------------------------------------- GIMP's own Python
def _interp(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pygimp.interp").write_text(text)
    return folder


def test_the_installer_checks_the_python_gimps_interpreter_files_name(tmp_path):
    """Not the system python3: the interpreter GIMP's own interpreter files register for .py plug-ins. Real
    interpreters are asked: this environment's (it has pyzmq and msgpack) and a bare venv's (it has neither)."""
    ok = _interp(tmp_path / "ok", f"python3={sys.executable}\n/usr/bin/python3={sys.executable}\n"
                                  ":Python:E::py::python3:\n")
    found = gimp_installer.check_gimp_python(gimp_installer.find_gimp_python(dirs=[ok], path=[]))
    assert found.python == sys.executable and "pygimp.interp" in found.how and found.missing == [], found
    assert gimp_installer.gimp_python_notes(found, tmp_path / "plug-ins") == []

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    bare = str(tmp_path / "bare" / "bin" / "python3")
    lacking = _interp(tmp_path / "lacking", f"# GIMP's bundled Python\npython={bare}\n:Python:E::py::python:\n")
    found = gimp_installer.check_gimp_python(gimp_installer.find_gimp_python(dirs=[lacking], path=[]))
    assert found.python == bare and found.missing == ["zmq", "msgpack"], found
    (note,) = gimp_installer.gimp_python_notes(found, tmp_path / "plug-ins")
    assert note.startswith(f"GIMP runs plug-ins with {bare} (registered in GIMP's interpreter files") and \
        "cannot import pyzmq and msgpack" in note, note


def test_the_installer_says_when_gimps_python_cannot_be_checked(tmp_path):
    """No interpreter file registers a Python and no python3 on the path loads GIMP 3's bindings (gi + the
    Gimp 3.0 typelib; this environment's Python has no such thing): nothing is checked, and the note says so."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    found = gimp_installer.check_gimp_python(gimp_installer.find_gimp_python(dirs=[], path=[str(bin_dir)]))
    assert found.python is None and f"tried {bin_dir / 'python3'}" in found.how, found
    (note,) = gimp_installer.gimp_python_notes(found, tmp_path / "plug-ins")
    assert note.startswith("could not check GIMP's Python for pyzmq and msgpack") and "import zmq, msgpack" in note
    flatpak = Path.home() / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP" / "3.0" / "plug-ins"
    (note,) = gimp_installer.gimp_python_notes(found, flatpak)
    assert "Flatpak" in note and "--vendor --python-version" in note
