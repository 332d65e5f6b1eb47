"""Model registry and download: local files first, clear offline errors, resumable checked downloads."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import torch

from anycost import registry
from anycost.cli import main
from anycost.download import DownloadError, download
from anycost.errors import ModelNotFoundError
from anycost.models.generator import Generator


def _write_small_model(path: Path) -> None:
    torch.manual_seed(0)
    G = Generator(resolution=16, style_dim=8, n_mlp=1, channel_multiplier=1, channel_max=16)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"g_ema": G.state_dict()}, path)


def test_user_dir_and_env_dir_order(tmp_path, monkeypatch):
    user = registry.user_data_dir() / "models"
    _write_small_model(user / "anycost-car-config-f.pt")
    assert registry.resolve_model("anycost-car-config-f") == user / "anycost-car-config-f.pt"
    envdir = tmp_path / "env-models"
    _write_small_model(envdir / "anycost-car-config-f.pt")
    monkeypatch.setenv("ANYCOST_MODELS_DIR", str(envdir))
    assert registry.resolve_model("anycost-car-config-f") == envdir / "anycost-car-config-f.pt"
    # free-form local names and explicit paths work too
    _write_small_model(envdir / "my-model.pt")
    assert registry.resolve_model("my-model") == envdir / "my-model.pt"
    assert registry.resolve_model(str(envdir / "my-model.pt")) == envdir / "my-model.pt"
    names = [r.name for r in registry.list_models() if r.installed]
    assert "anycost-car-config-f" in names and "my-model" in names


def test_offline_missing_model_fails_fast_with_where_to_put_it():
    with pytest.raises(ModelNotFoundError) as ei:
        registry.resolve_model("anycost-ffhq-config-f")
    msg = str(ei.value)
    assert "anycost-ffhq-config-f.pt" in msg and str(registry.user_models_dir()) in msg
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        registry.resolve_model("no-such-model")
    with pytest.raises(ModelNotFoundError, match="not found"):
        registry.resolve_model("/nonexistent/file.pt")


def test_unreachable_download_url_fails_fast(monkeypatch):
    monkeypatch.setenv("ANYCOST_DOWNLOAD_URL", "http://127.0.0.1:9/models")  # discard port: refused
    with pytest.raises(ModelNotFoundError, match="download failed"):
        registry.resolve_model("anycost-car-config-f")


def test_models_command_lists_installed_and_missing(capsys):
    _write_small_model(registry.user_data_dir() / "models" / "stylegan2-ffhq-config-f.pt")
    assert main(["models", "--paths"]) == 0
    out = capsys.readouterr().out
    # rows are "<mark> name  state  description": the mark is * for the default model
    lines = {ln[2:].split()[0]: ln for ln in out.splitlines() if ln[:2] in ("* ", "  ") and ln[2:3] != " "}
    assert "installed" in lines["stylegan2-ffhq-config-f"]
    assert "missing" in lines["anycost-ffhq-config-f"]
    assert lines["anycost-demo"].startswith("* ") and "installed" in lines["anycost-demo"]
    assert "Searched folders" in out


class _Server:
    """A loopback HTTP server with Range support that can drop the first transfer midway."""

    def __init__(self, payload: bytes, cut_first_at: int | None = None):
        self.payload = payload
        self.cut = cut_first_at
        self.requests: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.requests.append(rng)
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                body = outer.payload[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut is not None and len(outer.requests) == 1:
                    self.wfile.write(body[: outer.cut])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_resumes_and_checks_checksum(tmp_path):
    payload = bytes(range(256)) * 4096  # 1 MiB
    digest = hashlib.sha256(payload).hexdigest()
    target = tmp_path / "m.pt"
    with _Server(payload, cut_first_at=300_000) as srv:
        with pytest.raises(DownloadError, match="incomplete|connection lost"):
            download(srv.url + "/m.pt", target, sha256=digest, progress=False)
        assert not target.exists()
        part = target.with_name("m.pt.part")
        assert 0 < part.stat().st_size < len(payload)
        download(srv.url + "/m.pt", target, sha256=digest, progress=False)
        assert srv.requests[-1] == f"bytes={300_000}-"
    assert target.read_bytes() == payload
    assert not part.exists()


def test_download_checksum_mismatch_keeps_nothing(tmp_path):
    target = tmp_path / "m.pt"
    with _Server(b"not the model") as srv:
        with pytest.raises(DownloadError, match="checksum"):
            download(srv.url + "/m.pt", target, sha256="0" * 64, progress=False)
    assert not target.exists() and not target.with_name("m.pt.part").exists()


def test_registry_downloads_when_configured(tmp_path, monkeypatch):
    src = tmp_path / "src.pt"
    _write_small_model(src)
    with _Server(src.read_bytes()) as srv:
        monkeypatch.setenv("ANYCOST_DOWNLOAD_URL", srv.url + "/models/")
        path = registry.resolve_model("anycost-car-config-f")
    assert path == registry.user_models_dir() / "anycost-car-config-f.pt"
    assert path.read_bytes() == src.read_bytes()
