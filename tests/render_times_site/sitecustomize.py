"""Run at start-up by a backend a test starts with ``render_times.RenderTimes.env``: its preview choice
takes the given render times. A failure stops the backend (Python would only warn and go on measuring)."""

import importlib.util
import os
import sys
from pathlib import Path

try:
    _path = Path(__file__).resolve().parents[1] / "render_times.py"
    _spec = importlib.util.spec_from_file_location("render_times", _path)
    _module = sys.modules["render_times"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    _module.install_from_env()
except Exception as e:  # noqa: BLE001 - any failure must end the process, not be reported and passed over
    print(f"render_times: the given render times could not be installed: {e!r}", file=sys.stderr, flush=True)
    os._exit(3)
