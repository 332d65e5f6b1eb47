"""Running the real GIMP 3 from a Debian trixie chroot (Debian 12 ships only GIMP 2.10); no tests here.

The chroot is built once by ``tests/hosts/build_gimp_chroot.sh`` and cached at
``$ANYCOST_GIMP_CHROOT`` (default ``/var/cache/anycost/gimp3-chroot``). Each GIMP run mounts
``/proc`` and ``/dev`` into it and always unmounts them. The chroot shares the network and PID
namespaces, so a plug-in inside reaches a backend started outside on 127.0.0.1, and the backend's
connection file is found by the usual lookup when it is written inside the chroot's tree.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "tests" / "hosts" / "build_gimp_chroot.sh"
DEFAULT_ROOT = Path("/var/cache/anycost/gimp3-chroot")
GIMP = "gimp-console-3.0"
BATCH_EXIT = 64  # what gimp-console returns when a batch command fails
BASE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"}


class ChrootUnavailable(Exception):
    """The chroot cannot be built or entered on this machine; the message says why."""


def chroot_root() -> Path:
    return Path(os.environ.get("ANYCOST_GIMP_CHROOT") or DEFAULT_ROOT)


def ensure_chroot(timeout: float = 900.0) -> Path:
    """The ready chroot, built (or brought up to date) first if needed; ``ChrootUnavailable`` where that
    cannot be done here."""
    root = chroot_root()
    if not sys.platform.startswith("linux"):
        raise ChrootUnavailable("the GIMP 3 chroot needs Linux")
    if os.geteuid() != 0:
        raise ChrootUnavailable("building and entering the GIMP 3 chroot needs root")
    if not (root / "usr").is_dir() and shutil.which("debootstrap") is None:
        raise ChrootUnavailable("debootstrap is not installed (apt-get install debootstrap)")
    proc = subprocess.run(["bash", str(BUILD_SCRIPT), str(root)], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise ChrootUnavailable(f"building the GIMP 3 chroot at {root} failed (exit {proc.returncode}):\n{tail}")
    return root


class ChrootWorkdir:
    """A private folder inside the chroot (``/tmp/anycost-e2e-…``), seen at ``inside`` by GIMP and at
    ``outside`` by the test; removed on ``cleanup``."""

    def __init__(self, root: Path):
        self.root = root
        (root / "tmp").mkdir(exist_ok=True)
        self.outside = Path(tempfile.mkdtemp(prefix="anycost-e2e-", dir=root / "tmp"))
        self.inside = self.to_inside(self.outside)

    def to_inside(self, path: Path) -> Path:
        return Path("/") / Path(path).relative_to(self.root)

    def cleanup(self) -> None:
        shutil.rmtree(self.outside, ignore_errors=True)


@contextlib.contextmanager
def mounted(root: Path):
    """proc and dev mounted while inside, always unmounted after; one user of the chroot at a time."""
    with open(root.parent / f"{root.name}.run-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done: list[Path] = []
        try:
            for args, target in ((["-t", "proc", "proc"], root / "proc"), (["--bind", "/dev"], root / "dev")):
                subprocess.run(["mount", *args, str(target)], check=True, capture_output=True)
                done.append(target)
            yield
        finally:
            for target in reversed(done):
                subprocess.run(["umount", "-l", str(target)], capture_output=True)


def chroot_command(root: Path, env: dict[str, str], *argv: str) -> list[str]:
    """argv run inside the chroot with exactly ``env`` (plus PATH, LANG, HOME defaults)."""
    return ["chroot", str(root), "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in {**BASE_ENV, **env}.items()), *argv]


def gimp_batch_command(root: Path, script: str, env: dict[str, str]) -> list[str]:
    """``gimp-console-3.0`` with one Python batch command, then quit (exit 64 when the command raised)."""
    return chroot_command(root, env, GIMP, "-i", "-n", "-d", "-f", "-c", "--batch-interpreter=python-fu-eval",
                          "-b", script, "--quit")


def run_gimp_batch(root: Path, script: str, env: dict[str, str], timeout: float = 180.0) -> subprocess.CompletedProcess:
    with mounted(root):
        return subprocess.run(gimp_batch_command(root, script, env), capture_output=True, text=True, timeout=timeout)


class XDisplay:
    """Xvfb inside the chroot (call within ``mounted``), and xdotool to type into its windows."""

    def __init__(self, root: Path):
        self.root = root
        n = next(n for n in range(90, 200) if not (root / f"tmp/.X{n}-lock").exists()
                 and not Path(f"/tmp/.X{n}-lock").exists())
        self.display = f":{n}"
        self.proc = subprocess.Popen(chroot_command(root, {}, "Xvfb", self.display, "-screen", "0",
                                                    f"{os.environ.get('ANYCOST_TEST_SCREEN', '1280x1024')}x24",
                                                    "-nolisten", "tcp"),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not (root / f"tmp/.X11-unix/X{n}").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Xvfb {self.display} did not start in the chroot")
            time.sleep(0.05)

    def xdotool(self, *args: str, timeout: float = 30.0) -> str:
        done = subprocess.run(chroot_command(self.root, {"DISPLAY": self.display}, "xdotool", *args),
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"xdotool {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def windows(self, name: str) -> list[str]:
        """Ids of the visible windows whose title contains ``name``."""
        done = subprocess.run(chroot_command(self.root, {"DISPLAY": self.display}, "xdotool", "search",
                                             "--onlyvisible", "--name", name), capture_output=True, text=True)
        return done.stdout.split()

    def wait_window(self, name: str, timeout: float = 60.0, gone: bool = False) -> str | None:
        """The id of a visible window whose title contains ``name`` (``gone``: wait until there is none)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ids = self.windows(name)
            if gone and not ids:
                return None
            if ids and not gone:
                return ids[0]
            time.sleep(0.2)
        raise TimeoutError(f"a window named {name!r} did not {'close' if gone else 'appear'} within {timeout:g} s")

    def screenshot(self, inside: Path) -> None:
        """The screen as a PNG at ``inside`` (a path inside the chroot), taken with GDK by the chroot's Python."""
        code = ("import sys, gi; gi.require_version('Gdk', '3.0'); from gi.repository import Gdk; "
                "w = Gdk.get_default_root_window(); "
                "Gdk.pixbuf_get_from_window(w, 0, 0, w.get_width(), w.get_height()).savev(sys.argv[1], 'png', [], [])")
        done = subprocess.run(chroot_command(self.root, {"DISPLAY": self.display}, "python3", "-c", code, str(inside)),
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"the screenshot failed: {done.stderr.strip()[-2000:]}")

    def geometry(self, window: str) -> tuple[int, int, int, int]:
        """x, y, width, height of a window."""
        values = dict(line.split("=", 1) for line in self.xdotool("getwindowgeometry", "--shell", window).split())
        return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
