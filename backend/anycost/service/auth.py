"""Keys, connection files and CURVE.

A backend writes a connection file (JSON, mode 0600) that tells clients where it listens and which
key signs messages, like Jupyter's kernel files. Anyone who can read the file can drive the backend,
and anyone who can write its folder can plant a file of their own or delete it, so it lives in a
folder private to the user (see ``anycost_client.connection_file``) and is removed on clean shutdown.

A backend holds its connection file for its whole life (``ConnectionFileClaim``): a second backend
started with the same path is refused instead of overwriting it, and a stopping backend removes the
file only while it is still the one it wrote.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from pathlib import Path

from anycost_client.connection_file import (
    ConnectionFileError,
    default_runtime_dir,
    ensure_private_folder,
    find_connection_file,
    is_backend_process,
    is_loopback_endpoint,
    process_tag,
    read_connection_file,
    runtime_dir_choice,
)

from ..errors import InputError
from ..fsutil import atomic_write

__all__ = [
    "default_runtime_dir", "find_connection_file", "read_connection_file", "new_key", "write_connection_file",
    "free_loopback_endpoint", "is_loopback_endpoint", "load_curve", "load_curve_server_keys", "load_curve_client_keys",
    "generate_curve_keys", "ConnectionFileClaim",
]


def new_key() -> bytes:
    return secrets.token_bytes(32)


def free_loopback_endpoint() -> str:
    """A TCP endpoint on 127.0.0.1 with a port the OS says is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


class ConnectionFileClaim:
    """One backend's hold on its connection file path, from before the model loads until it stops.

    ``path`` None: ``backend-PID.json`` in the runtime folder (``fallback`` says why it is not
    ``$XDG_RUNTIME_DIR/anycost`` when it is not). A lock file beside the connection file (POSIX) is
    held while the backend lives, so two backends never share a path, even when started together.
    """

    def __init__(self, path: Path | None = None):
        self.fallback: str | None = None
        try:
            if path is None:
                folder, self.fallback = runtime_dir_choice()
                ensure_private_folder(folder, strict=True)
                path = folder / f"backend-{os.getpid()}.json"
            else:
                path = Path(path).absolute()
                if path.parent.exists():
                    from anycost_client.connection_file import folder_problem

                    problem = folder_problem(path.parent, strict=False)
                    if problem:
                        raise ConnectionFileError(f"refusing to write the connection file {path}: {problem}, so "
                                                  "others could replace or delete it; choose a folder only you "
                                                  "can write")
                else:
                    ensure_private_folder(path.parent, strict=True)
        except ConnectionFileError as e:
            raise InputError(str(e)) from e
        if path.is_dir():
            raise InputError(f"--connection-file {path} is a folder; give a file name")
        self.path: Path = path
        self._lock_fd: int | None = None
        self._written: tuple[int, int] | None = None  # (device, inode) of the file this backend wrote
        self._lock()
        holder = self._live_holder()
        if holder is not None:
            self.release()
            raise InputError(f"the connection file {path} belongs to a running backend (pid {holder}); stop it "
                             "first, or give this one another --connection-file")

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.lock")

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: the pid check alone
            return
        for _ in range(10):
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = self._live_holder()
                raise InputError(f"the connection file {self.path} belongs to a running backend"
                                 f"{f' (pid {holder})' if holder else ''}; stop it first, or give this one another "
                                 "--connection-file") from None
            # the previous holder may have removed the lock file between our open and flock: retry
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
            except FileNotFoundError:
                same = False
            if same:
                self._lock_fd = fd
                return
            os.close(fd)
        raise InputError(f"cannot lock {self.lock_path}: it keeps being replaced")

    def _live_holder(self) -> int | None:
        """The pid of another running backend the current file names, if any."""
        try:
            info = read_connection_file(self.path, follow_links=False)
        except ConnectionFileError:
            return None
        pid = info.get("pid")
        if pid == os.getpid() or not is_backend_process(pid, info.get("process")):
            return None
        return pid

    def read_previous(self) -> dict | None:
        """What an earlier backend left at this path (for ``--reuse-connection-file``), or None."""
        if not self.path.exists():
            return None
        try:
            return read_connection_file(self.path, follow_links=False)
        except ConnectionFileError as e:
            raise InputError(str(e)) from e

    def write(self, info: dict) -> Path:
        info = {**info, "pid": os.getpid(), "process": process_tag(os.getpid())}

        def write(tmp: str) -> None:  # mkstemp made it 0600 before the secret goes in
            with open(tmp, "w") as f:
                json.dump(info, f, indent=1)

        atomic_write(self.path, write, suffix=".json", mode=0o600)
        st = os.stat(self.path)
        self._written = (st.st_dev, st.st_ino)
        return self.path

    def withdraw(self) -> None:
        """Remove the connection file if it is still the one this backend wrote. Safe from a signal handler."""
        written, self._written = self._written, None
        if written is None:
            return
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == written:
                self.path.unlink()
        except OSError:
            pass

    def release(self) -> None:
        """Withdraw the file and give up the lock (the lock file goes too, while still held)."""
        self.withdraw()
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            try:
                self.lock_path.unlink()
            except OSError:
                pass
            os.close(fd)


def write_connection_file(path: Path | None, info: dict) -> Path:
    """Write ``info`` as JSON with mode 0600, atomically, into a private folder (checked, or created 0700).
    For callers that do not keep a claim: the lock is given up again at once."""
    claim = ConnectionFileClaim(path)
    try:
        out = claim.write(info)
        claim._written = None  # the file stays
    finally:
        claim.release()
    return out


def load_curve(secret_file: str | os.PathLike | None,
               allowed_clients: str | os.PathLike | None) -> tuple[bytes, bytes, list[bytes]]:
    """(server public key, server secret key, allowed client keys) for a CURVE backend; every problem
    is one InputError line, found before the backend opens a socket or loads its model."""
    if secret_file is None:
        raise InputError("--allowed-clients needs --curve-server-key FILE (the server's '.key_secret' file)")
    if not allowed_clients:
        raise InputError("--curve-server-key needs --allowed-clients DIR (the public keys of the clients "
                         "allowed to connect)")
    public, secret = load_curve_server_keys(secret_file)
    return public, secret, load_curve_client_keys(allowed_clients)


def load_curve_server_keys(secret_file: str | os.PathLike) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a zmq certificate file with a secret key."""
    public, secret = _load_certificate(secret_file, "--curve-server-key")
    if not secret:
        raise InputError(f"--curve-server-key {secret_file} holds no secret key (it is a public '.key' file); pass "
                         "the '.key_secret' file made by 'anycost serve --gen-curve-keys DIR'")
    return public, secret


def load_curve_client_keys(folder: str | os.PathLike) -> list[bytes]:
    """The public keys of the clients allowed to connect: every ``*.key`` file in ``folder``."""
    d = Path(folder)
    if not d.exists():
        raise InputError(f"--allowed-clients {d} does not exist")
    if not d.is_dir():
        raise InputError(f"--allowed-clients {d} is not a folder; give the folder of the clients' public '.key' "
                         "files")
    keys = []
    for p in sorted(d.glob("*.key")):
        public, _ = _load_certificate(p, "--allowed-clients")
        keys.append(public)
    if not keys:
        raise InputError(f"--allowed-clients {d} holds no public '.key' files, so no client could connect")
    return keys


def _load_certificate(path: str | os.PathLike, option: str) -> tuple[bytes, bytes | None]:
    import zmq
    import zmq.auth
    from zmq.utils import z85

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{option} {p} {'is not a file' if p.exists() else 'does not exist'}")
    if p.stat().st_size > 64 * 1024:  # a certificate is a few hundred bytes
        raise InputError(f"{option} {p} is not a ZeroMQ certificate file ({p.stat().st_size} bytes)")
    if not zmq.has("curve"):
        raise InputError("this ZeroMQ library was built without CURVE support; install pyzmq from its wheels")
    try:
        public, secret = zmq.auth.load_certificate(os.fspath(p))
        for k in (public, secret):
            if k is not None and len(z85.decode(k)) != 32:
                raise ValueError("a key is not 40 Z85 characters")
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise InputError(f"{option} {p} is not a ZeroMQ certificate file ({str(e).strip() or type(e).__name__}); "
                         "make keys with 'anycost serve --gen-curve-keys DIR'") from e
    if not public:
        raise InputError(f"{option} {p} holds no public key")
    return public, secret


def generate_curve_keys(directory: str | os.PathLike, name: str = "server") -> tuple[Path, Path]:
    """Create ``NAME.key`` (public) and ``NAME.key_secret`` in ``directory``; returns both paths."""
    import zmq.auth

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    public, secret = zmq.auth.create_certificates(os.fspath(d), name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)
