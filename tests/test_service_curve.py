"""A backend on a non-loopback address: CURVE is required, and only allowed client keys get in."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from service_support import Backend, make_directions

from anycost_client.client import BackendError, Client, load_curve_keys


def _keys(directory, name):
    out = subprocess.run([sys.executable, "-m", "anycost", "serve", "--gen-curve-keys", str(directory),
                          "--key-name", name], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return directory / f"{name}.key", directory / f"{name}.key_secret"


def test_curve_server_admits_only_allowed_clients(tmp_path, official_fixture):
    model = official_fixture / "generator.pt"
    dirs = make_directions(model, tmp_path / "dirs.safetensors")
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    allowed.mkdir()
    _, server_secret = _keys(keys, "server")
    from anycost.service.auth import generate_curve_keys

    alice_public, alice_secret = generate_curve_keys(keys, "alice")
    _, mallory_secret = generate_curve_keys(keys, "mallory")
    assert (server_secret.stat().st_mode & 0o777) == 0o600
    shutil.copy(alice_public, allowed)
    b = Backend(tmp_path, model, dirs, "--bind", "tcp://0.0.0.0:*", "--curve-server-key", str(server_secret),
                "--allowed-clients", str(allowed))
    try:
        assert b.info["curve_server_key"]
        endpoint = b.endpoint.replace("0.0.0.0", "127.0.0.1")
        with Client.connect(b.conn, endpoint=endpoint, curve=load_curve_keys(alice_secret)) as c:
            assert c.ping()["sessions"] == 0
        for curve in (None, load_curve_keys(mallory_secret)):
            with pytest.raises(BackendError):
                Client.connect(b.conn, endpoint=endpoint, curve=curve, connect_timeout=1.5)
        with Client.connect(b.conn, endpoint=endpoint, curve=load_curve_keys(alice_secret)) as c:
            assert c.ping()["sessions"] == 0, "the backend lives on after refused peers"
    finally:
        assert b.stop() == 0
