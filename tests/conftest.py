from __future__ import annotations

from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE = FIXTURES / "official_format"
ADA_FIXTURE = FIXTURES / "stylegan2_ada"


@pytest.fixture(scope="session")
def official_fixture() -> Path:
    if not (FIXTURE / "generator.pt").exists():
        pytest.fail(f"the official-format fixture is missing: expected it at {FIXTURE}")
    return FIXTURE


@pytest.fixture(scope="session")
def ada_fixture() -> Path:
    if not (ADA_FIXTURE / "network-snapshot.pkl").exists():
        pytest.fail(f"the StyleGAN2-ADA fixture is missing: expected it at {ADA_FIXTURE}")
    return ADA_FIXTURE


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Keep every test away from the real user's model directory and caches."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.delenv("ANYCOST_MODELS_DIR", raising=False)
    monkeypatch.delenv("ANYCOST_DOWNLOAD_URL", raising=False)
    # No background preview search in backends that tests start (they would compete for the CPU);
    # the tests of that search switch it back on.
    monkeypatch.setenv("ANYCOST_BACKGROUND_SEARCH", "0")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core machine: extra threads only wait for each other. Module-wide,
    so module fixtures that time or render run under it too."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
