"""Which wheel fits a host's Python, and which one is chosen (``anycost_installers.wheels``, read with
``packaging``), against the file names real projects publish."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from anycost_installers import wheels as W

INSTALLERS = Path(__file__).resolve().parents[1] / "installers"

PYZMQ_LINUX = "manylinux_2_26_x86_64.manylinux_2_28_x86_64"


@pytest.mark.parametrize("filename, python, platform, fits", [
    # manylinux: this CPython's own ABI, or the stable ABI of an earlier one
    (f"pyzmq-27.1.0-cp311-cp311-{PYZMQ_LINUX}.whl", "3.11", "linux_x86_64", True),
    ("msgpack-1.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "3.11", "linux_x86_64", True),
    ("msgpack-1.1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl", "3.11", "linux_aarch64", True),
    ("msgpack-1.1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl", "3.11", "linux_x86_64", False),
    ("msgpack-0.6.2-cp38-cp38-manylinux1_x86_64.whl", "3.8", "linux_x86_64", True),
    (f"pyzmq-27.1.0-cp312-abi3-{PYZMQ_LINUX}.whl", "3.13", "linux_x86_64", True),
    (f"pyzmq-27.1.0-cp312-abi3-{PYZMQ_LINUX}.whl", "3.11", "linux_x86_64", False),  # abi3 of a later Python
    (f"pyzmq-27.1.0-cp310-cp310-{PYZMQ_LINUX}.whl", "3.11", "linux_x86_64", False),
    (f"pyzmq-27.1.0-cp313-cp313t-{PYZMQ_LINUX}.whl", "3.13", "linux_x86_64", False),  # free-threaded build
    (f"pyzmq-27.1.0-pp310-pypy310_pp73-{PYZMQ_LINUX}.whl", "3.10", "linux_x86_64", False),
    ("msgpack-0.6.2-cp37-cp37m-manylinux1_x86_64.whl", "3.7", "linux_x86_64", True),  # the regexes said no
    # glibc above the manylinux_2_28 pip is asked for: the regexes said yes
    ("pyzmq-27.1.0-cp311-cp311-manylinux_2_34_x86_64.whl", "3.11", "linux_x86_64", False),
    ("pyzmq-27.1.0-cp311-cp311-manylinux_2_27_x86_64.whl", "3.11", "linux_x86_64", True),
    # musllinux is another C library
    ("pyzmq-27.1.0-cp311-cp311-musllinux_1_2_x86_64.whl", "3.11", "linux_x86_64", False),
    # macOS: arm64 takes universal2; a newer macOS than pip is asked for is refused (the regexes said yes)
    ("pyzmq-26.0.0-cp310-cp310-macosx_10_15_universal2.whl", "3.10", "macosx_arm64", True),
    ("pyzmq-26.0.0-cp310-cp310-macosx_10_15_x86_64.whl", "3.10", "macosx_arm64", False),
    ("pyzmq-26.0.0-cp310-cp310-macosx_11_0_arm64.whl", "3.10", "macosx_arm64", True),
    ("pyzmq-26.0.0-cp310-cp310-macosx_14_0_arm64.whl", "3.10", "macosx_arm64", False),
    ("msgpack-1.0.0-cp38-cp38-macosx_10_9_intel.whl", "3.8", "macosx_x86_64", True),  # the regexes said no
    # Windows
    ("msgpack-1.1.0-cp311-cp311-win_amd64.whl", "3.11", "win_amd64", True),
    ("msgpack-1.1.0-cp311-cp311-win32.whl", "3.11", "win_amd64", False),
    # pure Python
    ("msgpack-1.0.8-py3-none-any.whl", "3.10", "win_amd64", True),
    ("six-1.16.0-py2.py3-none-any.whl", "3.13", "macosx_arm64", True),
    ("typing_extensions-4.0.0-py310-none-any.whl", "3.11", "linux_x86_64", True),  # the regexes said no
    # local versions and build numbers are part of a valid name
    ("torch-2.3.0+cu121-cp311-cp311-linux_x86_64.whl", "3.11", "linux_x86_64", True),
    ("pyzmq-27.1.0-1-cp311-cp311-win_amd64.whl", "3.11", "win_amd64", True),
    # not wheel names (the regexes took any version)
    ("pyzmq-27.1.0.whl", "3.11", "win_amd64", False),
    ("pyzmq-27.1.0-cp311-cp311.whl", "3.11", "win_amd64", False),
    ("pyzmq-not.a.version-cp311-cp311-win_amd64.whl", "3.11", "win_amd64", False),
])
def test_which_wheels_fit(filename, python, platform, fits):
    assert W.compatible(filename, W.Target(python, platform)) is fits


def test_platform_tags_follow_what_pip_is_asked_for():
    linux = W.platform_tags("linux_x86_64")
    assert linux[0] == "manylinux_2_28_x86_64" and linux[-1] == "linux_x86_64"
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "manylinux_2_5_x86_64"} <= set(linux)
    assert not any(t.startswith("manylinux_2_29") for t in linux)
    arm = W.platform_tags("linux_aarch64")
    assert "manylinux2014_aarch64" in arm and not any(t.startswith(("manylinux1", "manylinux2010")) for t in arm)
    mac = W.platform_tags("macosx_arm64")
    assert mac[:2] == ["macosx_11_0_arm64", "macosx_11_0_universal2"] and "macosx_10_9_universal2" in mac
    assert W.platform_tags("win_amd64") == ["win_amd64"]
    for platform in W.PIP_PLATFORMS:  # every tag pip is asked for is one that fits
        assert set(W.PIP_PLATFORMS[platform]) <= set(W.platform_tags(platform)), platform


def _folder(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")  # only the names are read to choose
    return folder


@pytest.mark.parametrize("names, chosen", [
    # numbers compare as numbers
    (["msgpack-1.0.9-py3-none-any.whl", "msgpack-1.0.10-py3-none-any.whl"], "msgpack-1.0.10-py3-none-any.whl"),
    # a development release comes before its final release (the regexes put it after)
    (["msgpack-1.1.0-py3-none-any.whl", "msgpack-1.1.0.dev1-py3-none-any.whl"], "msgpack-1.1.0-py3-none-any.whl"),
    # pre-releases are taken only where there is no final release (the regexes took the newer rc) ...
    (["msgpack-1.0.8-py3-none-any.whl", "msgpack-1.1.0rc1-py3-none-any.whl"], "msgpack-1.0.8-py3-none-any.whl"),
    # ... and among them rc10 is newer than rc9, b1 than a2 (the regexes tied them and went by the file name)
    (["msgpack-1.1.0rc10-py3-none-any.whl", "msgpack-1.1.0rc9-py3-none-any.whl"], "msgpack-1.1.0rc10-py3-none-any.whl"),
    (["msgpack-1.1.0b1-py3-none-any.whl", "msgpack-1.1.0a2-py3-none-any.whl"], "msgpack-1.1.0b1-py3-none-any.whl"),
    # a post release and a local version come after their release; an epoch beats any version without one
    (["msgpack-1.1.0-py3-none-any.whl", "msgpack-1.1.0.post1-py3-none-any.whl"],
     "msgpack-1.1.0.post1-py3-none-any.whl"),
    (["msgpack-1.1.0-py3-none-any.whl", "msgpack-1.1.0+local.2-py3-none-any.whl"],
     "msgpack-1.1.0+local.2-py3-none-any.whl"),
    (["msgpack-2.0-py3-none-any.whl", "msgpack-1!1.0-py3-none-any.whl"], "msgpack-1!1.0-py3-none-any.whl"),
    # one version, several wheels: the most specific tag, then the highest build (the regexes went by the
    # file name: abi3 or py3-none-any before cp313-cp313, build 2 before build 10)
    ([f"pyzmq-27.1.0-cp312-abi3-{PYZMQ_LINUX}.whl", f"pyzmq-27.1.0-cp313-cp313-{PYZMQ_LINUX}.whl",
      "pyzmq-27.1.0-py3-none-any.whl"], f"pyzmq-27.1.0-cp313-cp313-{PYZMQ_LINUX}.whl"),
    (["pyzmq-27.1.0-2-py3-none-any.whl", "pyzmq-27.1.0-10-py3-none-any.whl"], "pyzmq-27.1.0-10-py3-none-any.whl"),
    # what does not fit, or is another project, is never chosen
    ([f"pyzmq-28.0.0-cp313-cp313t-{PYZMQ_LINUX}.whl", f"pyzmq-26.0.0-cp313-cp313-{PYZMQ_LINUX}.whl"],
     f"pyzmq-26.0.0-cp313-cp313-{PYZMQ_LINUX}.whl"),
])
def test_which_wheel_is_chosen(tmp_path, names, chosen):
    package = names[0].split("-")[0]
    found = W.find_wheel(_folder(tmp_path, *names), package, W.Target("3.13", "linux_x86_64"))
    assert found is not None and found.name == chosen


def test_project_names_are_compared_normalized(tmp_path):
    """As PEP 503 normalizes them: case, and runs of ``-``, ``_`` and ``.`` (the regexes left out ``.``)."""
    folder = _folder(tmp_path, "msgpack_python-0.5.6-py3-none-any.whl", "msgpack-1.0.0-py3-none-any.whl",
                     "zope.interface-6.0-py3-none-any.whl")
    target = W.Target("3.11", "win_amd64")
    assert W.find_wheel(folder, "msgpack", target).name == "msgpack-1.0.0-py3-none-any.whl"
    assert W.find_wheel(folder, "msgpack-python", target).name == "msgpack_python-0.5.6-py3-none-any.whl"
    assert W.find_wheel(folder, "Zope-Interface", target).name == "zope.interface-6.0-py3-none-any.whl"
    assert W.find_wheel(folder, "pyzmq", target) is None


WITHOUT_PACKAGING = """
import json, sys
sys.modules["packaging"] = None  # as in a host's own Python without it
sys.path.insert(0, sys.argv[1])
from anycost_installers import gimp, krita, wheels
try:
    wheels.compatible("msgpack-1.0.8-py3-none-any.whl", wheels.Target("3.11", "win_amd64"))
except wheels.WheelError as e:
    print(json.dumps({"error": str(e), "gimp": gimp.default_plug_ins_dir().name}))
"""


def test_without_packaging_the_installers_load_and_choosing_wheels_says_what_is_missing():
    """GIMP's Python imports the installer to check itself (tests/test_gimp_e2e.py) and may lack packaging."""
    done = subprocess.run([sys.executable, "-I", "-c", WITHOUT_PACKAGING, str(INSTALLERS)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["gimp"] == "plug-ins"
    assert got["error"].startswith("choosing wheels needs the 'packaging' library, which ") and \
        "pip install packaging" in got["error"], got
