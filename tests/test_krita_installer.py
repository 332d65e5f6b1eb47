"""``anycost install|uninstall|package krita``: wheel selection, the installed layout, kritarc editing, and
the zip checked with Krita's own importer (when Krita is installed). Offline: the wheels here are
small wheels built by the test with the real file names' tags; the real download path runs in
tests/test_krita_e2e.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from anycost_installers import krita as K
from anycost_installers import wheels as W
from anycost_installers.krita import KRITA_BUNDLED_PYTHONS, PACKAGE_PLATFORMS, PLUGIN, get_ini_value, set_ini_value

IMPORTER = Path("/usr/share/krita/pykrita/plugin_importer/plugin_importer.py")

PLAT_TAGS = {
    "linux_x86_64": "manylinux_2_26_x86_64.manylinux_2_28_x86_64",
    "linux_aarch64": "manylinux_2_28_aarch64",
    "win_amd64": "win_amd64",
    "macosx_x86_64": "macosx_10_15_x86_64",
    "macosx_arm64": "macosx_11_0_arm64",
}


def _wheel(folder: Path, name: str, module: str, version: str, py: str, plat: str) -> Path:
    path = folder / f"{name}-{version}-{py}-{py}-{plat}.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{module}/__init__.py", f"BUILT_FOR = {py + '-' + plat!r}\n__version__ = {version!r}\n")
        z.writestr(f"{name}-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\n")
    return path


@pytest.fixture
def wheel_dir(tmp_path) -> Path:
    d = tmp_path / "wheels"
    d.mkdir()
    for version in KRITA_BUNDLED_PYTHONS:
        py = f"cp{version.replace('.', '')}"
        for plat in PACKAGE_PLATFORMS + ("linux_aarch64",):
            _wheel(d, "pyzmq", "zmq", "27.1.0", py, PLAT_TAGS[plat])
            _wheel(d, "msgpack", "msgpack", "1.1.0", py, PLAT_TAGS[plat])
    _wheel(d, "pyzmq", "zmq", "26.0.0", "cp311", PLAT_TAGS["linux_x86_64"])  # older: never chosen
    return d


def test_wheel_tags():
    t = W.Target("3.11", "linux_x86_64")
    assert W.compatible("pyzmq-27.3.0-cp311-cp311-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl", t)
    assert W.compatible("msgpack-1.2.4-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", t)
    assert not W.compatible("pyzmq-27.3.0-cp310-cp310-manylinux_2_28_x86_64.whl", t), "other Python"
    assert not W.compatible("pyzmq-27.3.0-cp311-cp311-musllinux_1_2_x86_64.whl", t), "musl"
    assert not W.compatible("pyzmq-27.3.0-cp311-cp311-manylinux_2_28_aarch64.whl", t), "other machine"
    assert W.compatible("pyzmq-27.3.0-cp312-abi3-manylinux_2_28_x86_64.whl", W.Target("3.13", "linux_x86_64"))
    assert not W.compatible("pyzmq-27.3.0-cp312-abi3-manylinux_2_28_x86_64.whl", t), "abi3 of a later Python"
    assert W.compatible("msgpack-1.0.0-py3-none-any.whl", W.Target("3.10", "win_amd64"))
    mac = W.Target("3.10", "macosx_arm64")
    assert W.compatible("pyzmq-26.0.0-cp310-cp310-macosx_10_15_universal2.whl", mac)
    assert not W.compatible("pyzmq-26.0.0-cp310-cp310-macosx_10_15_x86_64.whl", mac)
    with pytest.raises(W.WheelError, match="3.11"):
        W.Target("311", "linux_x86_64")
    with pytest.raises(W.WheelError, match="unknown platform"):
        W.Target("3.11", "beos")


def test_wheel_choice_and_unpack(wheel_dir, tmp_path):
    t = W.Target("3.11", "linux_x86_64")
    assert W.find_wheel(wheel_dir, "pyzmq", t).name.startswith("pyzmq-27.1.0-cp311")
    out = W.vendor(t, tmp_path / "vendor", wheel_dir=wheel_dir, download=False, log=lambda *_: None)
    assert out.name == "cp311-linux_x86_64"
    assert "cp311-manylinux" in (out / "zmq" / "__init__.py").read_text()
    with pytest.raises(W.WheelError, match="no wheel of pyzmq, msgpack for Python 3.7"):
        W.vendor(W.Target("3.7", "linux_x86_64"), tmp_path / "v", wheel_dir=wheel_dir, download=False)
    evil = tmp_path / "evil.whl"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../escape.py", "x = 1\n")
    with pytest.raises(W.WheelError, match="refusing"):
        W.unpack_wheel(evil, tmp_path / "u")
    assert not (tmp_path / "escape.py").exists()


def test_kritarc_editing_keeps_everything_else(tmp_path):
    rc = tmp_path / "kritarc"
    rc.write_text("[General]\nfoo=bar\n\n[python]\nenable_other=true\n\n[MainWindow]\nState=AAA=\n")
    set_ini_value(rc, "python", "enable_anycost_face_edit", "true")
    set_ini_value(rc, "anycost_face_edit", "padding", "0.3")
    text = rc.read_text()
    assert "[General]\nfoo=bar\n" in text and "State=AAA=" in text and "enable_other=true" in text
    assert get_ini_value(rc, "python", "enable_anycost_face_edit") == "true"
    assert get_ini_value(rc, "anycost_face_edit", "padding") == "0.3"
    set_ini_value(rc, "python", "enable_anycost_face_edit", None)
    assert get_ini_value(rc, "python", "enable_anycost_face_edit") is None
    assert get_ini_value(rc, "python", "enable_other") == "true"


def _anycost(*args, env_home: Path) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "XDG_CONFIG_HOME": str(env_home / "config"), "XDG_CACHE_HOME": str(env_home / "cache"),
           "XDG_DATA_HOME": str(env_home / "data")}
    return subprocess.run([sys.executable, "-m", "anycost", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def _cli(monkeypatch, capsys, *args, env_home: Path) -> subprocess.CompletedProcess:
    """``anycost ARGS`` in this process (the same ``main`` as the console command, without paying for a
    new interpreter's imports)."""
    from anycost.cli import main

    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_CACHE_HOME", "cache"), ("XDG_DATA_HOME", "data")):
        monkeypatch.setenv(var, str(env_home / sub))
    capsys.readouterr()
    rc = main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["anycost", *args], rc, out.out, out.err)


def test_install_and_uninstall(tmp_path, wheel_dir):
    pykrita, rc = tmp_path / "krita" / "pykrita", tmp_path / "kritarc"
    rc.write_text("[python]\nenable_other=true\n")
    p = _anycost("install", "krita", "--pykrita-dir", str(pykrita), "--kritarc", str(rc), "--python-version",
                 "3.10", "--platform", "win_amd64", "--wheel-dir", str(wheel_dir), "--offline", env_home=tmp_path)
    assert p.returncode == 0, p.stderr
    plugin = pykrita / PLUGIN
    assert (pykrita / f"{PLUGIN}.desktop").is_file() and (plugin / "__init__.py").is_file()
    assert (plugin / f"{PLUGIN}.action").is_file() and not (pykrita.parent / "actions").exists(), "one action file"
    assert (plugin / "lib" / "anycost_client" / "edit_controller.py").is_file()
    assert "cp310-win_amd64" in (plugin / "vendor" / "cp310-win_amd64" / "zmq" / "__init__.py").read_text()
    assert get_ini_value(rc, "python", f"enable_{PLUGIN}") == "true"
    cfg = json.loads((tmp_path / "config" / "anycost" / "plugin.json").read_text())
    assert cfg["backend_command"] == [sys.executable, "-m", "anycost", "serve"]
    assert "Krita's Python: 3.10" in p.stdout
    assert "vendored for it: pyzmq-27.1.0-cp310-cp310-win_amd64.whl, msgpack-1.1.0-cp310-cp310-win_amd64.whl" \
        in p.stdout, "the wheels by name"
    assert json.loads((plugin / "INSTALL.json").read_text())["wheels"][0].startswith("pyzmq-27.1.0-cp310")
    assert not [q for q in pykrita.iterdir() if q.name.startswith(".")], "no staging folder left behind"

    set_ini_value(rc, PLUGIN, "padding", "0.4")  # what the plugin's settings dialog writes
    p = _anycost("uninstall", "krita", "--pykrita-dir", str(pykrita), "--kritarc", str(rc), env_home=tmp_path)
    assert p.returncode == 0, p.stderr
    assert not plugin.exists() and not (pykrita / f"{PLUGIN}.desktop").exists()
    assert get_ini_value(rc, "python", f"enable_{PLUGIN}") is None and "enable_other=true" in rc.read_text()
    assert get_ini_value(rc, PLUGIN, "padding") == "0.4", "settings stay without --purge"
    p = _anycost("uninstall", "krita", "--pykrita-dir", str(pykrita), "--kritarc", str(rc), "--purge",
                 env_home=tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"[{PLUGIN}]" not in rc.read_text() and "enable_other=true" in rc.read_text()


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_failed_reinstall_leaves_the_working_install_untouched(tmp_path, wheel_dir, monkeypatch, capsys):
    pykrita, rc = tmp_path / "krita" / "pykrita", tmp_path / "kritarc"
    args = ["install", "krita", "--pykrita-dir", str(pykrita), "--kritarc", str(rc), "--offline"]

    def _anycost(*a, env_home):
        return _cli(monkeypatch, capsys, *a, env_home=env_home)

    p = _anycost(*args, "--python-version", "3.11", "--platform", "linux_x86_64", "--wheel-dir", str(wheel_dir),
                 env_home=tmp_path)
    assert p.returncode == 0, p.stderr
    before, rc_before = _tree(pykrita), rc.read_text()
    assert "anycost_face_edit/INSTALL.json" in before and any("/vendor/cp311-linux_x86_64/zmq/" in k for k in before)

    empty = tmp_path / "no-wheels"
    empty.mkdir()
    p = _anycost(*args, "--python-version", "3.12", "--platform", "linux_x86_64", "--wheel-dir", str(empty),
                 env_home=tmp_path)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert p.stderr.startswith("anycost: error: no wheel of pyzmq, msgpack for Python 3.12"), p.stderr
    assert _tree(pykrita) == before, "the old install is complete and identical"
    assert rc.read_text() == rc_before

    # a first install that fails leaves nothing, and Krita is not told to load a plugin that is not there
    fresh, fresh_rc = tmp_path / "fresh" / "pykrita", tmp_path / "fresh-kritarc"
    p = _anycost("install", "krita", "--pykrita-dir", str(fresh), "--kritarc", str(fresh_rc), "--offline",
                 "--python-version", "3.12", "--platform", "linux_x86_64", "--wheel-dir", str(empty), env_home=tmp_path)
    assert p.returncode != 0
    assert list(fresh.iterdir()) == [] and not fresh_rc.exists()


def test_install_warns_about_an_activated_virtual_environment(tmp_path, wheel_dir, monkeypatch, capsys):
    """Krita started from the shell the installer ran in, with a virtual environment activated, cannot
    import PyQt5: the installer says so when VIRTUAL_ENV (or PYTHONHOME) is set, and only then."""
    args = ["install", "krita", "--pykrita-dir", str(tmp_path / "pykrita"), "--kritarc", str(tmp_path / "kritarc"),
            "--python-version", "3.11", "--platform", "linux_x86_64", "--wheel-dir", str(wheel_dir), "--offline"]
    monkeypatch.delenv("PYTHONHOME", raising=False)
    monkeypatch.setenv("VIRTUAL_ENV", str(tmp_path / "venv"))
    p = _cli(monkeypatch, capsys, *args, env_home=tmp_path)
    assert p.returncode == 0, p.stderr
    warning = f"  warning: a virtual environment is activated in this shell (VIRTUAL_ENV={tmp_path / 'venv'})"
    assert warning in p.stdout and "'deactivate'" in p.stdout and "PyQt5" in p.stdout, p.stdout
    plain_path = os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                                 if not (Path(d).parent / "pyvenv.cfg").is_file())
    monkeypatch.setenv("PATH", plain_path)
    monkeypatch.delenv("VIRTUAL_ENV")
    p = _cli(monkeypatch, capsys, *args, env_home=tmp_path)
    assert p.returncode == 0 and "warning:" not in p.stdout, p.stdout
    # what actually breaks Krita: a virtual environment's python3 first on PATH (VIRTUAL_ENV or not)
    venv = tmp_path / "other-venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "bin" / "python3").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", os.pathsep.join([str(venv / "bin"), plain_path]))
    p = _cli(monkeypatch, capsys, *args, env_home=tmp_path)
    assert f"its python3 first on PATH: {venv / 'bin' / 'python3'}" in p.stdout, p.stdout


def test_folders_that_cannot_be_written_are_one_line_errors(tmp_path, wheel_dir, monkeypatch, capsys):
    """A kritarc or plugin folder below a regular file: exit 2, one line naming the path, nothing changed;
    the kritarc is checked before the new plugin is swapped in."""
    pykrita, rc = tmp_path / "krita" / "pykrita", tmp_path / "kritarc"
    target = ["--python-version", "3.11", "--platform", "linux_x86_64", "--wheel-dir", str(wheel_dir), "--offline"]
    p = _cli(monkeypatch, capsys, "install", "krita", "--pykrita-dir", str(pykrita), "--kritarc", str(rc), *target,
             env_home=tmp_path)
    assert p.returncode == 0, p.stderr
    before, rc_before = _tree(pykrita), rc.read_text()
    afile = tmp_path / "afile"
    afile.write_text("not a folder")

    p = _cli(monkeypatch, capsys, "install", "krita", "--pykrita-dir", str(pykrita), "--kritarc",
             str(afile / "kritarc"), "--python-version", "3.12", "--platform", "linux_x86_64", "--wheel-dir",
             str(wheel_dir), "--offline", env_home=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith(f"anycost: error: cannot write Krita's settings file {afile / 'kritarc'}: "), p.stderr
    assert _tree(pykrita) == before, "the old install is not replaced"
    assert rc.read_text() == rc_before and afile.read_text() == "not a folder"

    p = _cli(monkeypatch, capsys, "install", "krita", *target, "--pykrita-dir", str(afile / "pykrita"), "--kritarc",
             str(rc), env_home=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("anycost: error: cannot install the plugin: ") and str(afile) in p.stderr
    assert rc.read_text() == rc_before and afile.read_text() == "not a folder"

    odd = tmp_path / "odd" / "pykrita"
    (odd / f"{PLUGIN}.desktop").mkdir(parents=True)  # a folder where uninstall expects a file
    p = _cli(monkeypatch, capsys, "uninstall", "krita", "--pykrita-dir", str(odd), "--kritarc", str(rc),
             env_home=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith(f"anycost: error: cannot uninstall the plugin: {odd / (PLUGIN + '.desktop')}: ")

    p = _cli(monkeypatch, capsys, "package", "krita", "-o", str(afile / "out.zip"), "--python-version", "3.11",
             "--platform", "linux_x86_64", "--wheel-dir", str(wheel_dir), "--offline", env_home=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("anycost: error: cannot write the package: ") and str(afile) in p.stderr


@pytest.mark.parametrize("option, value, message", [
    ("--python-version", "311", "python version must look like 3.11, got '311'"),
    ("--platform", "beos", "unknown platform 'beos'"),
])
def test_bad_target_is_a_clear_error(tmp_path, option, value, message, monkeypatch, capsys):
    args = {"--python-version": "3.11", "--platform": "linux_x86_64", option: value}
    p = _cli(monkeypatch, capsys, "install", "krita", "--pykrita-dir", str(tmp_path / "pykrita"), "--kritarc",
             str(tmp_path / "rc"), "--offline", *[x for kv in args.items() for x in kv], env_home=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.startswith(f"anycost: error: {message}"), p.stderr
    assert not (tmp_path / "pykrita" / PLUGIN).exists() and not (tmp_path / "rc").exists()


def test_link_install_points_at_the_sources(tmp_path, wheel_dir):
    pykrita = tmp_path / "pykrita"
    repo = Path(__file__).resolve().parents[1]
    source = repo / "plugin" / "krita" / PLUGIN
    K.install(pykrita, kritarc=tmp_path / "rc", python_version="3.11", platform="linux_x86_64",
              wheel_dir=wheel_dir, download=False, log=lambda *_: None)  # a copy first: the link replaces it
    report = K.install(pykrita, link=True, kritarc=tmp_path / "rc", python_version="3.11", platform="linux_x86_64",
                       wheel_dir=wheel_dir, download=False, log=lambda *_: None)
    assert report.linked and report.vendored
    plugin, beside = pykrita / PLUGIN, pykrita / f"{PLUGIN}{K.LINKED_SUFFIX}"
    assert plugin.is_symlink() and plugin.resolve() == source, "the folder itself is linked: new files show up"
    assert (beside / "lib" / "anycost_client").resolve() == repo / "plugin" / "anycost_client"
    assert (beside / "vendor" / "cp311-linux_x86_64" / "zmq").is_dir()
    assert not (source / "vendor").exists() and not (source / "lib").exists(), "nothing written into the checkout"
    assert not [q for q in pykrita.iterdir() if q.name.startswith(".")], "no staging folder left behind"

    # the plugin finds both beside its linked folder (this Python is the target's 3.11 on linux_x86_64)
    sys.path.insert(0, str(repo / "plugin" / "krita"))
    try:
        from anycost_face_edit import vendor_paths
    finally:
        sys.path.remove(str(repo / "plugin" / "krita"))
    assert vendor_paths.LINKED_SUFFIX == K.LINKED_SUFFIX
    added = vendor_paths.add_bundled_paths(str(plugin))
    try:
        if vendor_paths.candidate_keys() == ["cp311-linux_x86_64"]:
            assert added == [str(beside / "vendor" / "cp311-linux_x86_64"), str(beside / "lib")]
        else:
            assert added == [str(beside / "lib")]
    finally:
        for path in added:
            sys.path.remove(path)

    # a copy install replaces the link and removes what was beside it; uninstall leaves nothing
    K.install(pykrita, kritarc=tmp_path / "rc", python_version="3.11", platform="linux_x86_64",
              wheel_dir=wheel_dir, download=False, log=lambda *_: None)
    assert not plugin.is_symlink() and (plugin / "lib" / "anycost_client").is_dir() and not beside.exists()
    assert source.is_dir() and (source / "extension.py").is_file(), "the checkout is untouched"
    K.install(pykrita, link=True, kritarc=tmp_path / "rc", python_version="3.11", platform="linux_x86_64",
              wheel_dir=wheel_dir, download=False, log=lambda *_: None)
    K.uninstall(pykrita, kritarc=tmp_path / "rc")
    assert sorted(q.name for q in pykrita.iterdir()) == [] and (source / "extension.py").is_file()


def test_missing_wheels_offline_is_a_clear_error(tmp_path):
    with pytest.raises(K.InstallError, match="no wheel of pyzmq, msgpack for Python 3.10 on win_amd64"):
        K.install(tmp_path / "p", kritarc=tmp_path / "rc", python_version="3.10", platform="win_amd64",
                  wheel_dir=tmp_path, download=False)
    with pytest.raises(K.InstallError, match="--python-version"):
        K.install(tmp_path / "p", kritarc=tmp_path / "rc", krita=tmp_path / "no-krita-here", wheel_dir=tmp_path)


def test_package_is_accepted_by_kritas_importer(tmp_path, wheel_dir):
    out = tmp_path / "anycost_krita.zip"
    assert K.package(out, wheel_dir=wheel_dir, download=False, log=lambda *_: None) == out
    names = zipfile.ZipFile(out).namelist()
    assert f"{PLUGIN}.desktop" in names and f"{PLUGIN}/" in names and f"{PLUGIN}/__init__.py" in names
    assert f"{PLUGIN}.action" in names and f"{PLUGIN}/{PLUGIN}.action" not in names
    keys = {n.split("/")[2] for n in names if n.startswith(f"{PLUGIN}/vendor/") and n.count("/") > 2}
    assert keys == {W.Target(v, plat).key for v in KRITA_BUNDLED_PYTHONS for plat in PACKAGE_PLATFORMS}
    if not IMPORTER.exists():
        pytest.skip(f"Krita's plugin importer ({IMPORTER}) is not installed; the zip's layout was checked")
    import importlib.util

    spec = importlib.util.spec_from_file_location("krita_plugin_importer", IMPORTER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    resources = tmp_path / "resources"
    resources.mkdir()
    imported = mod.PluginImporter(str(out), str(resources), lambda plugin: True).import_all()
    assert [p["name"] for p in imported] == [PLUGIN]
    assert (resources / "pykrita" / PLUGIN / "__init__.py").is_file()
    assert (resources / "pykrita" / PLUGIN / "lib" / "anycost_client" / "protocol.py").is_file()
    assert (resources / "actions" / f"{PLUGIN}.action").is_file()
    assert (resources / "pykrita" / f"{PLUGIN}.desktop").is_file()


@pytest.mark.parametrize("layout, version", [
    ("bin/python310.dll", "3.10"),
    ("python/python38.dll", "3.8"),
    ("python/python310.zip", "3.10"),
    ("Contents/Frameworks/Python.framework/Versions/3.10/Python", "3.10"),
    ("lib/python3.13/os.py", "3.13"),
])
def test_krita_python_found_in_official_layouts(tmp_path, layout, version):
    root = tmp_path / "krita"
    (root / layout).parent.mkdir(parents=True)
    (root / layout).write_text("")
    if layout.endswith(".dll"):  # the stable-ABI shim beside it says nothing about the version
        (root / layout).with_name("python3.dll").write_text("")
    assert K.detect_krita_python(root)[0] == version
    assert K.detect_krita_python(tmp_path / "nothing") is None


def test_krita_python_read_from_the_pykrita_library(tmp_path):
    lib = tmp_path / "usr" / "lib" / "x86_64-linux-gnu" / "kritaplugins" / "kritapykrita.so"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"\x7fELF\x00junk\x00libpython3.11.so.1.0\x00more")
    assert K.detect_krita_python(tmp_path / "usr") == ("3.11", str(lib))


def test_a_system_python_is_not_taken_for_kritas(tmp_path, monkeypatch):
    """Without --krita, a prefix such as /usr counts only with Krita's own Python plugin in it."""
    usr = tmp_path / "usr"
    (usr / "lib" / "python3.11").mkdir(parents=True)
    (usr / "lib" / "python3.11" / "os.py").write_text("")
    (usr / "lib" / "x86_64-linux-gnu" / "libpython3.11.so.1.0").parent.mkdir(parents=True)
    (usr / "lib" / "x86_64-linux-gnu" / "libpython3.11.so.1.0").write_bytes(b"")
    monkeypatch.setattr(K, "_krita_roots", lambda: [usr])
    assert K.detect_krita_python() is None
    with pytest.raises(K.InstallError, match="no Krita found on PATH"):
        K.install(tmp_path / "p", kritarc=tmp_path / "rc", download=False)
    assert K.detect_krita_python(usr) == ("3.11", str(usr / "lib" / "python3.11")), "an explicit --krita folder"
    lib = usr / "lib" / "x86_64-linux-gnu" / "kritaplugins" / "kritapykrita.so"
    lib.parent.mkdir()
    lib.write_bytes(b"\x7fELF\x00libpython3.11.so.1.0\x00")
    assert K.detect_krita_python() == ("3.11", str(lib))
