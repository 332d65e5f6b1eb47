"""A backend killed and restarted on the same endpoint and key: clients reconnect and carry on."""

from __future__ import annotations

import signal
import time

from service_support import Backend, make_directions, noise_rgba

from anycost_client.client import Client
from anycost_client.connection import Status


def test_client_survives_backend_restart(tmp_path, official_fixture):
    model = official_fixture / "generator.pt"
    dirs = make_directions(model, tmp_path / "dirs.safetensors")
    conn_file = tmp_path / "conn.json"
    a = Backend(tmp_path, model, dirs, "--reuse-connection-file", conn=conn_file)
    statuses: list[Status] = []
    client = Client.connect(conn_file, timeout=60, ping_interval=0.3, pong_timeout=1.0, backoff=(0.1, 0.5),
                            on_status=statuses.append)
    b = None
    try:
        session = client.open(noise_rgba(64, 64), 64, 64, align=False)
        first = session.edit(sefa_0=0.5)
        endpoint, key = a.endpoint, a.key
        a.stop(signal.SIGKILL)
        assert conn_file.exists(), "a killed backend leaves its file behind"
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:  # what a host's timer does meanwhile
            client.conn.tick()
            time.sleep(0.05)
        assert client.status == Status.RECONNECTING
        b = Backend(tmp_path, model, dirs, "--reuse-connection-file", conn=conn_file)
        assert (b.endpoint, b.key) == (endpoint, key)
        # the old session died with the old backend: the client notices, reopens it and answers
        second = session.edit(sefa_0=0.5)
        assert session.reopened == 1
        assert second.box == first.box and second.rgba == first.rgba, "same region, same sliders, same pixels"
        assert client.status == Status.CONNECTED and statuses[-2:] == [Status.RECONNECTING, Status.CONNECTED]
        assert client.ping()["sessions"] == 1
        session.close()
    finally:
        client.close()
        a.stop()
        if b is not None:
            assert b.stop() == 0
