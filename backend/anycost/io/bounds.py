"""Bounds on what a model file may declare, checked before anything is parsed deeply or allocated.

A model file is data from anywhere. Its metadata (a JSON header) says how large a network to build,
so a 100 KB file could otherwise ask for terabytes, a header of deep brackets could exhaust the
parser's stack, and a huge header could take minutes. Here:

- ``check_header_size`` / ``parse_json``: header size, JSON size and nesting depth are bounded before
  JSON is parsed;
- ``check_generator_settings`` / ``check_encoder_settings`` / ``check_discriminator_settings``: every
  architecture setting has a type and a range (the table in docs/model-format.md);
- ``check_generator_shapes`` / ``check_encoder_shapes`` / ``check_discriminator_shapes``: the settings
  agree with the shapes of the tensors stored in the file (official key layout), before a module is
  built.

Each check raises ``ValueError`` with one line; the model-file reader turns it into a ModelFileError
that names the file.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_HEADER_BYTES = 8 * 1024 * 1024  # the whole safetensors header (tensor table + metadata)
MAX_JSON_BYTES = 4 * 1024 * 1024  # one metadata value
MAX_JSON_DEPTH = 64  # nested arrays/objects

# (kind, low, high) per setting; 'int' refuses booleans and floats, 'number' must be finite
GENERATOR_BOUNDS: dict[str, tuple[str, float, float]] = {
    "resolution": ("int", 8, 1024),  # and a power of two
    "style_dim": ("int", 1, 2048),
    "n_mlp": ("int", 1, 32),
    "channel_multiplier": ("number", 1 / 64, 64),
    "channel_max": ("int", 1, 4096),
    "lr_mlp": ("number", 1e-6, 1.0),
    "conv_clamp": ("number", 1e-6, 1e6),  # or null
}
MAX_CHANNELS = 4096  # any explicit width
# Settings that disagree with the stored tensors are refused before building when they ask for more than
# twice the file's weights plus this many (a network that small is built, then compared key by key)
SMALL_NETWORK = 4_000_000
MAX_BLUR_TAPS = 16
MAX_SLE_PAIRS = 16
ENCODER_BOUNDS: dict[str, tuple[str, float, float]] = {
    "n_style": ("int", 1, 64),
    "style_dim": ("int", 1, 2048),
    "width": ("int", 1, 512),
    "input_size": ("int", 16, 1024),
}
ENCODER_DEPTHS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}
DISCRIMINATOR_BOUNDS: dict[str, tuple[str, float, float]] = {
    "resolution": ("int", 8, 1024),  # and a power of two
    "channel_multiplier": ("number", 1 / 64, 64),
    "channel_max": ("int", 1, 4096),
    "mbstd_group": ("int", 1, 64),
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def check_header_size(n: int) -> None:
    if n > MAX_HEADER_BYTES:
        raise ValueError(f"its header declares {n} bytes; model files have at most {MAX_HEADER_BYTES} "
                         "(a header that large is not a model's metadata)")


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON ``text`` (brackets inside strings ignored)."""
    import numpy as np

    brackets = re.sub(r"[^\[\]{}]", "", _STRING.sub("", text))
    if not brackets:
        return 0
    codes = np.frombuffer(brackets.encode("ascii"), np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


def parse_json(text: Any, what: str) -> Any:
    """``json.loads`` with the size and depth bounded first; every failure is one ValueError line."""
    if not isinstance(text, str):
        raise ValueError(f"{what} is not text")
    if len(text) > MAX_JSON_BYTES:
        raise ValueError(f"{what} is {len(text)} characters; at most {MAX_JSON_BYTES} are read")
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{what} nests {depth} levels deep; at most {MAX_JSON_DEPTH} are read")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{what} is not valid JSON: {str(e).splitlines()[0] if str(e) else type(e).__name__}") \
            from e


def _check_value(name: str, value: Any, kind: str, lo: float, hi: float) -> None:
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        raise ValueError(f"setting {name!r} must be {'an integer' if kind == 'int' else 'a finite number'}, "
                         f"got {_show(value)}")
    if not lo <= value <= hi:
        raise ValueError(f"setting {name!r} is {value!r}; this build accepts {lo:g}..{hi:g}")


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def _check_settings(settings: Any, bounds: dict[str, tuple[str, float, float]], known: set[str],
                    what: str) -> dict:
    if not isinstance(settings, dict):
        raise ValueError(f"the {what} settings must be a JSON object, got {type(settings).__name__}")
    unknown = sorted(str(k)[:40] for k in settings if k not in known)
    if unknown:
        raise ValueError(f"unknown {what} settings: {unknown[:5]}")
    for name, (kind, lo, hi) in bounds.items():
        if name in settings and not (name == "conv_clamp" and settings[name] is None):
            _check_value(name, settings[name], kind, lo, hi)
    return settings


def _check_resolution(s: dict) -> None:
    res = s.get("resolution")
    if res is not None and res & (res - 1):
        raise ValueError(f"setting 'resolution' must be a power of two, got {res}")


def _check_channels(channels: Any) -> None:
    if channels is None:
        return
    if not isinstance(channels, dict) or len(channels) > 16:
        raise ValueError("setting 'channels' must be an object {resolution: width} with at most 16 entries")
    for k, v in channels.items():
        if not (isinstance(k, str) and k.isdigit() and len(k) <= 5 and int(k) >= 4 and not int(k) & (int(k) - 1)):
            raise ValueError(f"setting 'channels' has the key {_show(k)}; keys are resolutions (4, 8, 16, …)")
        _check_value(f"channels[{k}]", v, "int", 1, MAX_CHANNELS)


def check_generator_settings(settings: Any, known: set[str]) -> dict:
    """Types and ranges of a generator's settings (``known``: the fields GeneratorConfig has)."""
    s = _check_settings(settings, GENERATOR_BOUNDS, known, "generator")
    _check_resolution(s)
    _check_channels(s.get("channels"))
    if "w_avg" in s and not isinstance(s["w_avg"], bool):
        raise ValueError(f"setting 'w_avg' must be true or false, got {_show(s['w_avg'])}")
    blur = s.get("blur_kernel")
    if blur is not None:
        if not isinstance(blur, list) or not 1 <= len(blur) <= MAX_BLUR_TAPS:
            raise ValueError(f"setting 'blur_kernel' must be a list of 1..{MAX_BLUR_TAPS} taps")
        for t in blur:
            _check_value("blur_kernel", t, "int", 0, 1024)
        if not any(blur):
            raise ValueError("setting 'blur_kernel' has no non-zero tap")
    sle = s.get("sle")
    if sle is not None:
        if not isinstance(sle, list) or len(sle) > MAX_SLE_PAIRS:
            raise ValueError(f"setting 'sle' must be a list of at most {MAX_SLE_PAIRS} [low, high] pairs")
        for pair in sle:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ValueError(f"setting 'sle' holds {_show(pair)}; each entry is a [low, high] pair")
            for r in pair:
                _check_value("sle", r, "int", 4, 1024)
    return s


def check_discriminator_settings(settings: Any, known: set[str]) -> dict:
    s = _check_settings(settings, DISCRIMINATOR_BOUNDS, known, "discriminator")
    if "resolution" not in s:
        raise ValueError("the discriminator settings lack 'resolution'")
    _check_resolution(s)
    _check_channels(s.get("channels"))
    inputs = s.get("input_resolutions")
    if inputs is not None:
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= 16:
            raise ValueError("setting 'input_resolutions' must be a list of 1..16 resolutions")
        for r in inputs:
            _check_value("input_resolutions", r, "int", 8, 1024)
    return s


def check_encoder_settings(settings: Any, known: set[str]) -> dict:
    s = _check_settings(settings, ENCODER_BOUNDS, known, "encoder")
    if "depth" in s and (isinstance(s["depth"], bool) or s["depth"] not in ENCODER_DEPTHS):
        raise ValueError(f"setting 'depth' must be one of {sorted(ENCODER_DEPTHS)}, got {_show(s['depth'])}")
    return s


# ------------------------------------------------------------------------- settings vs tensors
def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _compare(expected: dict[str, tuple[int, ...]], shapes: dict[str, tuple[int, ...]], what: str) -> None:
    """Refuse settings that ask for far more than the file holds. A smaller disagreement is left to the
    full comparison after the (then small) network is built, which names every missing, unexpected and
    mismatched key."""
    missing = [k for k in expected if k not in shapes]
    wrong = [f"{k}: file {shapes[k]} vs settings {expected[k]}" for k in expected
             if k in shapes and shapes[k] != expected[k]]
    if not (missing or wrong):
        return
    asked = sum(_numel(s) for s in expected.values())
    held = sum(_numel(s) for s in shapes.values())
    if asked <= 2 * held + SMALL_NETWORK:
        return
    parts = []
    if wrong:
        parts.append(f"shape mismatches ({len(wrong)}): " + ", ".join(wrong[:4]))
    if missing:
        parts.append(f"missing keys ({len(missing)}): " + ", ".join(missing[:4]))
    raise ValueError(f"the {what} these settings describe does not fit the stored tensors (it needs {asked} weights, "
                     f"the file holds {held}): " + "; ".join(parts))


def check_generator_shapes(resolution: int, style_dim: int, n_mlp: int, channels: dict[int, int],
                           shapes: dict[str, tuple[int, ...]]) -> None:
    """The tensors a generator of these settings has in the official layout, against the file's."""
    if any(c < 1 for c in channels.values()):
        raise ValueError(f"the generator settings give a resolution no channels: {channels}")
    ch = channels
    expected: dict[str, tuple[int, ...]] = {f"style.{i}.weight": (style_dim, style_dim) for i in range(1, n_mlp + 1)}
    expected.update({
        "input.input": (1, ch[4], 4, 4),
        "conv1.conv.weight": (1, ch[4], ch[4], 3, 3),
        "conv1.conv.modulation.weight": (ch[4], style_dim),
        "to_rgb1.conv.weight": (1, 3, ch[4], 1, 1),
    })
    k, r = 0, 8
    while r <= resolution:
        expected[f"convs.{2 * k}.conv.weight"] = (1, ch[r], ch[r // 2], 3, 3)
        expected[f"convs.{2 * k}.conv.modulation.weight"] = (ch[r // 2], style_dim)
        expected[f"convs.{2 * k + 1}.conv.weight"] = (1, ch[r], ch[r], 3, 3)
        expected[f"to_rgbs.{k}.conv.weight"] = (1, 3, ch[r], 1, 1)
        k, r = k + 1, 2 * r
    _compare(expected, shapes, "generator")


def check_discriminator_shapes(resolution: int, channels: dict[int, int], inputs: list[int],
                               shapes: dict[str, tuple[int, ...]]) -> None:
    """The input, block and head tensors a discriminator of these settings has, against the file's."""
    if any(c < 1 for c in channels.values()):
        raise ValueError(f"the discriminator settings give a resolution no channels: {channels}")
    ch = channels
    expected: dict[str, tuple[int, ...]] = {f"from_rgbs.{r}.0.weight": (ch[r], 3, 1, 1) for r in inputs}
    r = 8
    while r <= resolution:
        expected[f"blocks.{r}.conv1.0.weight"] = (ch[r], ch[r], 3, 3)
        expected[f"blocks.{r}.conv2.1.weight"] = (ch[r // 2], ch[r], 3, 3)
        r *= 2
    expected["final_conv.0.weight"] = (ch[4], ch[4] + 1, 3, 3)
    expected["final_linear.0.weight"] = (ch[4], ch[4] * 16)
    _compare(expected, shapes, "discriminator")


def check_encoder_shapes(n_style: int, style_dim: int, depth: int, width: int,
                         shapes: dict[str, tuple[int, ...]]) -> None:
    """The stem, head and widest block of an encoder of these settings, against the file's tensors."""
    expansion = 4 if depth == 50 else 1
    last = f"layer4.{ENCODER_DEPTHS[depth][3] - 1}"
    widest = ({f"{last}.conv3.weight": (width * 32, width * 8, 1, 1)} if depth == 50
              else {f"{last}.conv2.weight": (width * 8, width * 8, 3, 3)})
    _compare({"conv1.weight": (width, 3, 7, 7), "fc.weight": (n_style * style_dim, width * 8 * expansion),
              "mean_latent": (style_dim,), **widest}, shapes, "encoder")
