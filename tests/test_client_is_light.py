"""The plugin-side package must run inside a host's Python: pyzmq and msgpack only."""

from __future__ import annotations

import subprocess
import sys


def test_client_package_imports_nothing_heavy():
    code = (
        "import sys, anycost_client, anycost_client.client, anycost_client.connection, "
        "anycost_client.connection_file, anycost_client.protocol\n"
        "heavy = sorted(m for m in ('numpy', 'torch', 'PIL', 'anycost') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"plugin package pulled in: {r.stdout.strip()}"


def test_the_command_line_starts_without_torch():
    """Building every subcommand's options imports no torch: `anycost --help` and argument errors are instant
    (a bad --curve-server-key is reported within a second)."""
    code = "import sys, anycost.cli as c\nc.build_parser()\nprint('torch' in sys.modules)\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
