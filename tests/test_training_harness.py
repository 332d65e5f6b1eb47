"""The one training loop: the order of its periodic actions, the final checkpoint, a stop on a signal."""

from __future__ import annotations

import os
import signal

import pytest

from anycost.training.harness import Every, TrainingStopped, run_steps


class Counter:
    """A trainee whose step is a counter; ``hook(step)`` runs inside each step."""

    def __init__(self, hook=None):
        self.step = 0
        self.hook = hook

    def train_step(self) -> dict[str, float]:
        if self.hook is not None:
            self.hook(self.step + 1)
        self.step += 1
        return {"loss": 1.0 / self.step}


def test_periodic_actions_in_order_and_a_final_checkpoint():
    seen = []
    t = Counter()
    timing = run_steps(t, 5, log=lambda s, logs: seen.append(("log", s, sorted(logs))), log_every=2,
                       images_per_step=4, every=[Every(3, lambda s, _: seen.append(("sample", s)))],
                       checkpoint=lambda spent: seen.append(("ckpt", t.step)), checkpoint_every=2,
                       on_step=lambda s, _: seen.append(("step", s)), progress=False)
    assert timing.steps == 5 and timing.seconds >= 0
    assert seen == [("step", 1),
                    ("log", 2, ["img_per_s", "loss"]), ("ckpt", 2), ("step", 2),
                    ("sample", 3), ("step", 3),
                    ("log", 4, ["img_per_s", "loss"]), ("ckpt", 4), ("step", 4),
                    ("step", 5), ("ckpt", 5)]  # the end is saved once, as it was not a checkpoint step


def test_a_resumed_run_at_its_end_is_not_saved_again_on_a_checkpoint_step():
    saved = []
    t = Counter()
    t.step = 4
    assert run_steps(t, 4, checkpoint=saved.append, checkpoint_every=2, progress=False).steps == 0
    assert saved == []


def test_a_signal_stops_at_the_step_boundary_after_a_checkpoint():
    saved = []
    before = signal.getsignal(signal.SIGTERM)
    t = Counter(hook=lambda s: os.kill(os.getpid(), signal.SIGTERM) if s == 3 else None)
    with pytest.raises(TrainingStopped, match="stopped at step 3 of 10.*--resume"):
        run_steps(t, 10, checkpoint=lambda spent: saved.append(t.step), checkpoint_every=4, progress=False,
                  resume_hint="run it again with --resume")
    assert t.step == 3 and saved == [3]  # the step under way finished, then its checkpoint was written
    assert signal.getsignal(signal.SIGTERM) == before  # the handlers are put back


def test_without_a_checkpoint_ctrl_c_interrupts_as_usual():
    t = Counter(hook=lambda s: os.kill(os.getpid(), signal.SIGINT) if s == 2 else None)
    with pytest.raises(KeyboardInterrupt):
        run_steps(t, 10, progress=False)
    assert t.step == 1  # interrupted inside the second step


@pytest.mark.slow
def test_a_stopped_training_run_resumes_bit_for_bit(tmp_path):
    import torch

    from anycost.training.anycost_trainer import AnycostTrainer
    from anycost.training.checkpoint import list_checkpoints
    from anycost.training.config import build_config
    from anycost.training.data import TensorStream

    def trainer(out) -> AnycostTrainer:
        cfg = build_config({"preset": "tiny", "res": 16, "out": str(out), "steps": 4, "stages": "plain:1,adaptive:1",
                            "sample_every": 0, "metrics_every": 0, "checkpoint_every": 0, "log_every": 1})
        imgs = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
        return AnycostTrainer(cfg, TensorStream(imgs, [8, 16], cfg.batch, cfg.seed), quiet=True)

    straight = trainer(tmp_path / "a")
    for _ in range(4):
        straight.train_step()
    stopped = trainer(tmp_path / "b")
    step = stopped.train_step

    def step_then_signal():
        logs = step()
        if stopped.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return logs

    stopped.train_step = step_then_signal
    with pytest.raises(TrainingStopped, match="step 2 of 4"):
        stopped.run(progress=False)
    assert [p.name for p in list_checkpoints(tmp_path / "b")] == ["ckpt-00000002.pt"]
    resumed = trainer(tmp_path / "b")
    resumed.resume()
    assert resumed.run(progress=False).is_file()
    assert resumed.step == 4
    for k, v in straight.G_ema.state_dict().items():
        assert torch.equal(v, resumed.G_ema.state_dict()[k]), k
