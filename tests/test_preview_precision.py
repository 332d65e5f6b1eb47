"""bf16 previews: chosen only where the CPU has native bf16 and it costs at most 0.5 dB; commits stay fp32."""

from __future__ import annotations

import pytest
import torch
from model_support import tiny_generator

from anycost.editing.preview_choice import BF16_MAX_COST_DB, bf16_cost_db, decide_preview_precision
from anycost.editing.render import Cost
from anycost.models.precision import cpu_has_native_bf16

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bf16_renders_close_to_fp32_and_its_cost_is_measured():
    G = tiny_generator(res=32)
    w = G.styles_from_seed(2)
    with torch.no_grad():
        a, b = G.synthesize(w), G.synthesize(w, dtype=torch.bfloat16)
    assert b.dtype == torch.float32 and 0 < (a - b).abs().mean() < 0.05
    cost = bf16_cost_db(G, Cost(16, 0.5))
    assert 0 <= cost < 3  # a small, measured loss (0 would mean the bf16 path was not taken)
    assert bf16_cost_db(G, Cost(16, 0.5)) == cost  # deterministic


def test_the_decision_follows_the_setting_and_the_hardware(monkeypatch):
    G = tiny_generator(res=32)
    assert decide_preview_precision(G, 80.0, (0.5, 1.0), "fp32")["precision"] == "fp32"
    monkeypatch.setenv("ANYCOST_BF16", "0")
    assert not cpu_has_native_bf16()
    d = decide_preview_precision(G, 80.0, (0.5, 1.0), "auto")
    assert d["precision"] == "fp32" and "no native bf16" in d["reason"]
    forced = decide_preview_precision(G, 1e-6, (0.5, 1.0), "bf16")  # asked for: bf16, its cost reported
    assert forced["precision"] == "bf16" and "cost_db" in forced
    monkeypatch.setenv("ANYCOST_BF16", "1")
    auto = decide_preview_precision(G, 1e-6, (0.5, 1.0), "auto")  # a budget nothing fits: a cut-down preview
    assert "cost_db" in auto
    assert (auto["precision"] == "bf16") == (auto["cost_db"] <= BF16_MAX_COST_DB and auto["speedup"] > 1.05)
    with pytest.raises(Exception, match="precision"):
        decide_preview_precision(G, 80.0, (1.0,), "fp16")


def test_commits_stay_fp32_unless_asked():
    from anycost.editing.session import Editor

    ed = Editor("anycost-demo", use_lpips=False, preview_precision="bf16")
    ed.preview_choice()
    assert ed.preview_dtype == torch.bfloat16 and ed.commit_dtype is None
    assert ed.preview_choice().precision == "bf16"
    assert Editor("anycost-demo", use_lpips=False, commit_precision="bf16").commit_dtype == torch.bfloat16
