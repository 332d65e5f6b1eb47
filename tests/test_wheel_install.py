"""The built wheel carries the host plug-ins: installers run from a wheel install, not only a checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

INSTALL_BOTH = """
import json, sys
from pathlib import Path
from anycost_installers import gimp, krita, sources
out = Path(sys.argv[1])
k = krita.install(out / "pykrita", python_version="3.11", vendor_wheels=False, kritarc=out / "kritarc", log=str)
g = gimp.install(out / "plug-ins", vendor_wheels=False, log=str)
print(json.dumps({"roots": [str(r) for r in sources.plugin_roots()], "krita": str(k.plugin_dir),
                  "gimp": str(g.plugin_dir), "client": str(sources.client_package())}))
"""


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.slow
def test_plugins_install_from_the_wheel(tmp_path):
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        str(REPO), "-w", str(wheels)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (wheel,) = wheels.glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                        str(wheel)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # pyzmq and msgpack from this environment (appended after the wheel's own packages; its .pth hooks,
    # such as an editable install of this checkout, are not run from there)
    import zmq

    (site,) = (venv / "lib").glob("python3*/site-packages")
    (site / "deps.pth").write_text(str(Path(zmq.__file__).parents[1]) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "config"), HOME=str(tmp_path))
    r = subprocess.run([str(py), "-c", INSTALL_BOTH, str(tmp_path / "out")], capture_output=True, text=True,
                       env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.splitlines()[-1])
    assert not Path(got["client"]).is_relative_to(REPO), "the installed client package, not the checkout's"

    out = tmp_path / "out"
    krita = files(out / "pykrita" / "anycost_face_edit")
    for name, data in files(REPO / "plugin" / "krita" / "anycost_face_edit").items():
        assert krita.get(name) == data, name
    assert (out / "pykrita" / "anycost_face_edit.desktop").read_bytes() == \
        (REPO / "plugin" / "krita" / "anycost_face_edit.desktop").read_bytes()
    gimp = files(out / "plug-ins" / "anycost_face_edit")
    for name, data in files(REPO / "plugin" / "gimp" / "anycost_face_edit").items():
        assert gimp.get(name) == data, name
    client = files(REPO / "plugin" / "anycost_client")
    assert "protocol.py" in client
    for name, data in client.items():  # the client package beside each plug-in, as in the checkout
        assert krita.get(f"lib/anycost_client/{name}") == data, name
        assert gimp.get(f"anycost_client/{name}") == data, name
