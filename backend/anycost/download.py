"""Resumable model download with progress and checksum (a convenience; everything works offline)."""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

CHUNK = 1 << 20


class DownloadError(Exception):
    pass


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, target: Path, *, sha256: str | None = None, timeout: float = 10.0,
             progress: bool | None = None) -> Path:
    """Fetch ``url`` to ``target``.

    Data goes to ``target.part`` first; an interrupted download resumes from there with an
    HTTP Range request. The file only appears under its final name once complete and, when
    a checksum is known, verified.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "anycost"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to fetch: the part file is complete
            resp = None
        else:
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"cannot reach {url}: {reason}") from e
    if resp is not None:
        with resp:
            if have and resp.status != 206:  # server ignored Range: start over
                have = 0
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            show = sys.stderr.isatty() if progress is None else progress
            bar = None
            if show:
                from tqdm import tqdm

                bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=target.name)
            try:
                with open(part, "ab" if have else "wb") as f:
                    while True:
                        try:
                            block = resp.read(CHUNK)
                        except OSError as e:
                            raise DownloadError(f"connection lost after {f.tell()} bytes: {e}") from e
                        if not block:
                            break
                        f.write(block)
                        if bar:
                            bar.update(len(block))
            finally:
                if bar:
                    bar.close()
            if total is not None and part.stat().st_size < total:
                raise DownloadError(f"incomplete download ({part.stat().st_size} of {total} bytes); "
                                    "run again to resume")
    if sha256:
        got = sha256_file(part)
        if got != sha256.lower():
            part.unlink(missing_ok=True)
            raise DownloadError(f"checksum mismatch for {target.name}: expected {sha256}, got {got}")
    os.replace(part, target)
    return target
