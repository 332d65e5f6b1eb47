"""The staged-install core both host installers use (``anycost_installers.staging``): a new install is
built beside the old one and swapped in only when complete, so a failure or a kill midway leaves the
old install working, and the next run replaces it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from anycost_installers.staging import Staging

INSTALLERS = Path(__file__).resolve().parents[1] / "installers"
NAME = "plug"


def _tree(folder: Path) -> dict[str, bytes | str]:
    """Every entry below ``folder``: a file's bytes, a link's target."""
    out: dict[str, bytes | str] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_symlink():
            out[rel] = f"-> {os.readlink(p)}"
        elif p.is_file():
            out[rel] = p.read_bytes()
    return out


def _install(parent: Path, files: dict[str, str]) -> Path:
    with Staging(parent, NAME) as staging:
        stage = staging.folder()
        for rel, text in files.items():
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            (stage / rel).write_text(text)
        staging.swap_in(stage, parent / NAME)
    return parent / NAME


def test_a_second_run_replaces_the_first_cleanly(tmp_path):
    parent = tmp_path / "plug-ins"
    dest = _install(parent, {"main.py": "v1", "old_only.py": "stale", "sub/a.py": "a1"})
    assert _tree(parent) == {"plug/main.py": b"v1", "plug/old_only.py": b"stale", "plug/sub/a.py": b"a1"}
    _install(parent, {"main.py": "v2", "sub/a.py": "a2"})
    assert _tree(parent) == {"plug/main.py": b"v2", "plug/sub/a.py": b"a2"}, "nothing of the first run is left"
    assert sorted(p.name for p in parent.iterdir()) == [NAME] and dest.is_dir()


def test_a_failure_midway_leaves_the_old_install_intact(tmp_path):
    parent = tmp_path / "plug-ins"
    _install(parent, {"main.py": "v1"})
    before = _tree(parent)
    with pytest.raises(RuntimeError, match="no wheels"):
        with Staging(parent, NAME) as staging:
            stage = staging.folder()
            (stage / "main.py").write_text("half of v2")
            raise RuntimeError("no wheels")
    assert _tree(parent) == before and sorted(p.name for p in parent.iterdir()) == [NAME]


def test_a_failed_swap_puts_the_old_install_back(tmp_path, monkeypatch):
    parent = tmp_path / "plug-ins"
    _install(parent, {"main.py": "v1"})
    before = _tree(parent)
    real_rename = Path.rename

    def rename(self, target):
        if self.name.endswith(".installing"):  # the move that puts the new install in place
            raise PermissionError(13, "Permission denied", str(self))
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(PermissionError):
        _install(parent, {"main.py": "v2"})
    assert _tree(parent) == before and sorted(p.name for p in parent.iterdir()) == [NAME]


def test_a_link_in_the_way_is_replaced_and_put_back_on_failure(tmp_path, monkeypatch):
    parent = tmp_path / "plug-ins"
    source = tmp_path / "source"
    source.mkdir()
    (source / "main.py").write_text("linked")
    parent.mkdir()
    (parent / NAME).symlink_to(source, target_is_directory=True)
    real_rename = Path.rename

    def rename(self, target):
        if self.name.endswith(".installing"):
            raise PermissionError(13, "Permission denied", str(self))
        return real_rename(self, target)

    with monkeypatch.context() as m:
        m.setattr(Path, "rename", rename)
        with pytest.raises(PermissionError):
            _install(parent, {"main.py": "copied"})
    assert (parent / NAME).is_symlink() and sorted(p.name for p in parent.iterdir()) == [NAME], "the link is back"
    _install(parent, {"main.py": "copied"})
    assert not (parent / NAME).is_symlink() and (parent / NAME / "main.py").read_text() == "copied"
    assert (source / "main.py").read_text() == "linked", "what the link pointed to is untouched"


KILLED = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from anycost_installers.staging import Staging
    with Staging(Path(sys.argv[2]), "plug") as staging:
        stage = staging.folder()
        (stage / "main.py").write_text("half of v2")
        print("staged", flush=True)
        time.sleep(60)
""")


def test_an_install_killed_midway_leaves_the_old_one_and_the_next_run_cleans_up(tmp_path):
    parent = tmp_path / "plug-ins"
    _install(parent, {"main.py": "v1"})
    before = _tree(parent)
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(INSTALLERS), str(parent)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "staged"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert {k: v for k, v in _tree(parent).items() if not k.startswith(".")} == before, "the old install works"
    assert _tree(parent)[f".{NAME}.installing/main.py"] == b"half of v2", "the killed run's stage is left"
    _install(parent, {"main.py": "v3"})
    assert _tree(parent) == {"plug/main.py": b"v3"}, "the next run clears it and replaces cleanly"


def test_a_kill_between_the_two_renames_is_undone_by_the_next_run(tmp_path):
    """Killed after the old install was moved aside and before the new one took its place: the next run
    puts the old one back first (then replaces it as usual)."""
    parent = tmp_path / "plug-ins"
    _install(parent, {"main.py": "v1"})
    (parent / NAME).rename(parent / f".{NAME}.old")
    (parent / f".{NAME}.installing").mkdir()
    with Staging(parent, NAME):
        assert _tree(parent) == {"plug/main.py": b"v1"}, "the old install is back, the stage gone"
    # an old folder beside an install that did take its place is only a leftover
    (parent / f".{NAME}.old").mkdir()
    (parent / f".{NAME}.old" / "main.py").write_text("v0")
    with Staging(parent, NAME):
        assert _tree(parent) == {"plug/main.py": b"v1"}


def test_nothing_staged_twice_and_leftovers_of_earlier_versions_go(tmp_path):
    parent = tmp_path / "plug-ins"
    parent.mkdir()
    for leftover in (f".{NAME}-new-abc123", f".{NAME}-old-def456", f".{NAME}-new-abc123-link"):
        (parent / leftover).mkdir()
    with Staging(parent, NAME) as staging:
        assert list(parent.iterdir()) == []
        staging.folder()
        with pytest.raises(ValueError, match="staged already"):
            staging.folder()
        link = staging.path("-link")
        link.symlink_to(tmp_path)
    assert list(parent.iterdir()) == [] and tmp_path.is_dir()
