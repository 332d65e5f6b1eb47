"""Outputs killed mid-write: the temporary file says what it is, and the next write into that folder
removes it once its writer is gone (never one whose writer still runs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from anycost.fsutil import PARTIAL_PREFIX, STALE_AFTER, _host, atomic_write, sweep_partials

REPO = Path(__file__).resolve().parents[1]

KILLED_WRITER = r"""
import sys, time
from anycost.fsutil import atomic_write

def write(tmp):
    with open(tmp, "wb") as f:
        f.write(b"\0" * (4 << 20))  # 4 MB written, then the process is killed before the rename
        f.flush()
        print("writing", flush=True)
        time.sleep(120)

atomic_write(sys.argv[1], write)
"""


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_kill_9_during_a_write_leaves_a_named_partial_that_the_next_write_removes(tmp_path):
    target = tmp_path / "portrait.png"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    left = [p.name for p in tmp_path.iterdir()]
    assert not target.exists(), "never a partial file under the final name"
    assert len(left) == 1 and left[0].startswith(PARTIAL_PREFIX), f"the leftover says what it is: {left}"
    assert f"-{proc.pid}-" in left[0], "and which process wrote it"
    assert (tmp_path / left[0]).stat().st_size == 4 << 20

    # the next run that writes into this folder removes it
    out = subprocess.run([sys.executable, "-c", "import sys; from anycost.fsutil import atomic_write; "
                          "atomic_write(sys.argv[1], lambda t: open(t, 'wb').write(b'ok'))", str(tmp_path / "b.png")],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png"]


def test_only_leftovers_of_gone_writers_are_removed(tmp_path):
    host = _host()
    dead = tmp_path / f"{PARTIAL_PREFIX}{host}-{_dead_pid()}-abc.png"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f"{PARTIAL_PREFIX}{host}-{sleeper.pid}-def.png"  # its writer still runs
        other_host = tmp_path / f"{PARTIAL_PREFIX}00000000-{_dead_pid()}-ghi.png"  # maybe still running there
        old_other_host = tmp_path / f"{PARTIAL_PREFIX}00000000-1-jkl.png"
        unrelated = tmp_path / ".portrait.png.tmp"  # not ours to judge
        for p in (dead, live, other_host, old_other_host, unrelated):
            p.write_bytes(b"x")
        day_ago = time.time() - STALE_AFTER - 60
        os.utime(old_other_host, (day_ago, day_ago))
        atomic_write(tmp_path / "out.png", lambda t: Path(t).write_bytes(b"ok"))
        assert not dead.exists() and not old_other_host.exists()
        assert live.exists() and other_host.exists() and unrelated.exists()
        assert (tmp_path / "out.png").read_bytes() == b"ok"
        assert sweep_partials(tmp_path) == [], "a folder is swept once per process"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_edit_outputs_use_the_same_names(tmp_path):
    from anycost.commands.edit import _write_together

    leftover = tmp_path / f"{PARTIAL_PREFIX}{_host()}-{_dead_pid()}-x.png"
    leftover.write_bytes(b"x" * 1000)
    seen = []

    def writer(tmp: str) -> None:
        seen.append(Path(tmp).name)
        Path(tmp).write_bytes(b"image")

    _write_together([(tmp_path / "a.png", writer), (tmp_path / "a.npy", writer)])
    assert all(name.startswith(PARTIAL_PREFIX) for name in seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "a.png"]
