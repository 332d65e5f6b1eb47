from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Test lanes, by module: "host" drives a real Krita, GIMP or system Qt (or installs a wheel);
# "service" starts real backend or CLI processes and talks over real sockets; "slow" trains or
# distils for real. Everything else is "unit": in-process, seconds each. `pytest -m unit` is the fast
# lane for everyday work; CI runs every lane.
LANES = {
    "host": {"test_krita_e2e", "test_gimp_e2e", "test_krita_dialog", "test_krita_installer",
             "test_wheel_install"},
    "service": {"test_service_flow", "test_service_hardening", "test_service_memory", "test_service_restart",
                "test_service_curve", "test_search_service", "test_krita_plugin", "test_gimp_plugin_parts",
                "test_output_leftovers", "test_client_is_light", "test_cli_generate", "test_preview_interrupt"},
    "slow": {"test_distill", "test_training_ddp", "test_autoencoder_training", "test_encoder_training",
             "test_training_run"},
}
LANE_NAMES = ("unit", *LANES)


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = Path(str(item.fspath)).stem
        lane = next((name for name, modules in LANES.items() if module in modules), "unit")
        if lane == "unit" and item.get_closest_marker("slow"):
            lane = "slow"
        item.add_marker(getattr(pytest.mark, lane))


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
