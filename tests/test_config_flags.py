"""Training commands take their flags from their settings dataclasses: every field is a flag or a listed
exception, the flags' defaults are the dataclass's, and a resumed run keeps its settings unless a flag is given."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import pytest

from anycost.cli import build_parser
from anycost.commands import adopt, search, train, train_autoencoder, train_classifier, train_encoder
from anycost.commands.config_flags import add_config_flags, config_from_flags, flags_given
from anycost.errors import InputError
from anycost.search.settings import EvolutionSettings, SearchSettings
from anycost.settings_field import setting
from anycost.training.adopt import AdoptSettings
from anycost.training.autoencoder_config import AutoencoderConfig
from anycost.training.classifier_training_config import ClassifierTrainConfig
from anycost.training.config import PRESETS, TrainConfig, build_config
from anycost.training.distill_config import DistillConfig
from anycost.training.encoder_training_config import EncoderTrainConfig


@dataclass(frozen=True)
class Case:
    command: str
    cls: type
    not_flags: tuple[str, ...]  # the command's listed exceptions
    needs: tuple[str, ...]  # the arguments the command requires
    given: dict  # settings those arguments set
    resumed: tuple[str, str]  # two int settings a resumed run carries


CASES = [
    Case("train", TrainConfig, train.SET_ONLY, (), {}, ("seed", "keep_last")),
    Case("train-autoencoder", AutoencoderConfig, train_autoencoder.NOT_FLAGS, ("--out", "runs/x"),
         {"out": "runs/x"}, ("steps", "prior_samples")),
    Case("train-encoder", EncoderTrainConfig, train_encoder.NOT_FLAGS, ("--model", "m", "-o", "o.safetensors"), {},
         ("steps", "checkpoint_every")),
    Case("train-classifier", ClassifierTrainConfig, train_classifier.NOT_FLAGS,
         ("--synthetic", "8", "-o", "o.safetensors"), {}, ("steps", "batch")),
    Case("adopt", AdoptSettings, adopt.NOT_FLAGS, ("m", "-o", "o.safetensors"), {}, ("distill_steps", "sefa")),
    Case("distill", DistillConfig, (), ("m", "-o", "o.safetensors"), {}, ("steps", "keep_last")),
    Case("search", EvolutionSettings, search.NOT_FLAGS["EvolutionSettings"], ("--budget-ms", "40"), {},
         ("population", "generations")),
    Case("search", SearchSettings, search.NOT_FLAGS["SearchSettings"], ("--budget-ms", "40"), {},
         ("latents", "validation_latents")),
]
IDS = [f"{c.command}:{c.cls.__name__}" for c in CASES]


def subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def option(p: argparse.ArgumentParser, dest: str) -> str:
    return next(a.option_strings[0] for a in p._actions if a.dest == dest and a.option_strings)


def build(case: Case, args: argparse.Namespace, base: dict | None = None):
    """The settings the command builds (train layers them over its presets)."""
    if case.cls is TrainConfig:
        return build_config(flags_given(TrainConfig, args), base=base)
    return config_from_flags(case.cls, args, base)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_setting_is_a_flag_or_a_listed_exception(case):
    p = subparser(case.command)
    dests = {a.dest for a in p._actions}
    names = [f.name for f in dataclasses.fields(case.cls)]
    assert set(case.not_flags) <= set(names), "an exception names no setting"
    for f in dataclasses.fields(case.cls):
        if f.name in case.not_flags:
            assert f.name not in dests, f"{f.name} is listed as having no flag but has one"
        else:
            assert f.name in dests, f"{f.name} has no flag and is not listed as an exception"
            assert f.metadata.get("help"), f"{f.name}'s flag has no help text"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_parsed_defaults_are_the_dataclass_defaults(case):
    p = subparser(case.command)
    args = p.parse_args(list(case.needs))
    assert flags_given(case.cls, args) == case.given
    assert build(case, args) == case.cls(**case.given)
    # --help states each default as the dataclass holds it
    text = " ".join(p.format_help().split())
    for f in dataclasses.fields(case.cls):
        default = getattr(case.cls(), f.name)
        if f.name in case.not_flags or f.metadata.get("required") or default in (None, ""):
            continue
        shown = f.metadata.get("default_text") or (
            ",".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default))
        assert f"(default: {shown})" in text, f"--help does not show {f.name}'s default {shown}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_resumed_run_keeps_its_settings_unless_a_flag_is_given(case):
    p = subparser(case.command)
    first, second = case.resumed
    base = dataclasses.asdict(case.cls(**case.given))
    base[first] += 7
    base[second] += 5
    kept = build(case, p.parse_args(list(case.needs)), base)
    assert (getattr(kept, first), getattr(kept, second)) == (base[first], base[second])
    over = build(case, p.parse_args([*case.needs, option(p, first), "3"]), base)
    assert (getattr(over, first), getattr(over, second)) == (3, base[second])


def test_flag_names_aliases_and_kinds_come_from_the_field():
    @dataclass
    class S:
        real_folder: str | None = setting(None, "images", flag="--real", aliases=("--reals",))
        span: tuple[float, float] = setting((0.5, 1.0), "lo,hi")
        names: tuple[str, ...] = setting(("a", "b"), "names")
        ratios: list[float] = setting([0.5, 1.0], "ratios")
        flip: bool = setting(True, "flips")
        steps: int | None = setting(None, "steps", exclusive="length")
        kimg: float | None = setting(None, "kimg", exclusive="length")
        kept: int = 3

    p = argparse.ArgumentParser()
    add_config_flags(p, S, skip=("kept",))
    s = config_from_flags(S, p.parse_args(["--reals", "x", "--span", "0.2,0.4", "--names", "c", "--ratios", "1",
                                           "--no-flip", "--kimg", "2.5"]))
    assert s == S(real_folder="x", span=(0.2, 0.4), names=("c",), ratios=[1.0], flip=False, kimg=2.5)
    assert config_from_flags(S, p.parse_args(["--real", "y"])).real_folder == "y"
    for bad in (["--span", "0.2"], ["--span", "a,b"], ["--steps", "1", "--kimg", "2"], ["--kept", "1"]):
        with pytest.raises(SystemExit):
            p.parse_args(bad)
    with pytest.raises(InputError):
        config_from_flags(S, p.parse_args([]), {"nonsense": 1})


def test_a_skipped_setting_is_not_read_from_a_flag_of_the_same_name():
    """A command's own flag may share a name with a setting it does not expose (it means something else)."""
    p = argparse.ArgumentParser()
    p.add_argument("--truncation", type=float, default=0.7)
    add_config_flags(p, DistillConfig)
    add_config_flags(p, SearchSettings, skip=search.NOT_FLAGS["SearchSettings"])
    assert config_from_flags(SearchSettings, p.parse_args(["--truncation", "0.1"])).truncation == 0.8


def test_the_preset_choices_are_the_presets():
    p = subparser("train")
    preset = next(a for a in p._actions if a.dest == "preset")
    assert set(preset.choices) == set(PRESETS)
