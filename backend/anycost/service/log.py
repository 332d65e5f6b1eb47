"""Structured logs: one JSON object per line on stderr."""

from __future__ import annotations

import json
import sys
import threading
import time

_lock = threading.Lock()
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
threshold = LEVELS["info"]


def log(level: str, event: str, **fields) -> None:
    if LEVELS.get(level, 20) < threshold:
        return
    rec = {"ts": round(time.time(), 3), "level": level, "event": event, **fields}
    line = json.dumps(rec, default=str, separators=(",", ":"))
    with _lock:
        print(line, file=sys.stderr, flush=True)
