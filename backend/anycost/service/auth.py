"""Keys, connection files and CURVE.

A backend writes a connection file (JSON, mode 0600) that tells clients where it listens and which
key signs messages, like Jupyter's kernel files. Anyone who can read the file can drive the backend,
so it lives in the user's private runtime directory and is removed on clean shutdown.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import socket
from pathlib import Path
from urllib.parse import urlsplit

from anycost_client.connection_file import default_runtime_dir, find_connection_file, read_connection_file

from ..errors import InputError
from ..fsutil import atomic_write

__all__ = [
    "default_runtime_dir", "find_connection_file", "read_connection_file", "new_key", "write_connection_file",
    "free_loopback_endpoint", "is_loopback_endpoint", "load_curve_server_keys", "generate_curve_keys",
]


def new_key() -> bytes:
    return secrets.token_bytes(32)


def free_loopback_endpoint() -> str:
    """A TCP endpoint on 127.0.0.1 with a port the OS says is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and TCP on a loopback address (or 'localhost')."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', an interface name or a host name: may be reachable from outside


def write_connection_file(path: Path | None, info: dict) -> Path:
    """Write ``info`` as JSON with mode 0600, atomically (a reader never sees half a file)."""
    if path is None:
        d = default_runtime_dir()
        path = d / f"backend-{os.getpid()}.json"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

    def write(tmp: str) -> None:  # mkstemp made it 0600 before the secret goes in
        with open(tmp, "w") as f:
            json.dump(info, f, indent=1)

    atomic_write(path, write, suffix=".json", mode=0o600)
    return path


def load_curve_server_keys(secret_file: str | os.PathLike) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a zmq certificate file with a secret key."""
    import zmq.auth

    try:
        public, secret = zmq.auth.load_certificate(os.fspath(secret_file))
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read the CURVE server key {secret_file}: {e}") from e
    if not secret:
        raise InputError(f"{secret_file} holds no secret key; pass the '.key_secret' file made by "
                         "'anycost serve --gen-curve-keys DIR'")
    return public, secret


def generate_curve_keys(directory: str | os.PathLike, name: str = "server") -> tuple[Path, Path]:
    """Create ``NAME.key`` (public) and ``NAME.key_secret`` in ``directory``; returns both paths."""
    import zmq.auth

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    public, secret = zmq.auth.create_certificates(os.fspath(d), name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)
