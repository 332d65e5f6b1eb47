"""StyleGAN2-ADA (PyTorch) networks mapped onto the project's generator and discriminator.

The maths are the official StyleGAN2 config-f's, under other names: ``mapping.fc{i}`` are the
style MLP, ``synthesis.b{R}`` the blocks (``conv0`` upsamples, ``conv1``, ``torgb``), each layer
an ``affine`` → modulated conv → ``noise_const``·``noise_strength`` → bias + leaky ReLU. Weights
are stored without their equalised-lr gain in both layouts, so they copy over as they are; only
shapes change (``[C,4,4]`` → ``[1,C,4,4]`` and so on). The FIR filters (``resample_filter``) are
checked to be the [1,3,3,1] filter the generator builds itself, not copied.

Anything outside this one architecture (conditional models, StyleGAN3, 'orig'/'resnet' synthesis,
other activations) is refused before a module is built.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch

from ..errors import ModelFileError
from ..models.generator import GeneratorConfig
from ..models.layers import make_kernel
from .network_pickle import PersistentObject

SUPPORTED = ("unconditional StyleGAN2 generators from NVIDIA's stylegan2-ada-pytorch (network-snapshot-*.pkl, "
             "ffhq.pkl, metfaces.pkl, afhq*.pkl and their fine-tunes)")
DEFAULT_LR_MAPPING = 0.01


@dataclass
class KeyMap:
    """Where every source tensor goes: ``copy`` source → target name; ``checked`` are compared, not copied."""

    copy: dict[str, str] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)


def _blocks(keys: Iterable[str], prefix: str) -> list[int]:
    pat = re.compile(re.escape(prefix) + r"b(\d+)\.")
    return sorted({int(m.group(1)) for k in keys if (m := pat.match(k))})


def generator_key_map(keys: Iterable[str]) -> KeyMap:
    """Source ``G_ema`` state-dict names → the project's generator names."""
    keys = list(keys)
    km = KeyMap()
    fcs = sorted({int(m.group(1)) for k in keys if (m := re.fullmatch(r"mapping\.fc(\d+)\.weight", k))})
    for i in fcs:
        for p in ("weight", "bias"):
            km.copy[f"mapping.fc{i}.{p}"] = f"style.{i + 1}.{p}"
    km.copy["mapping.w_avg"] = "w_avg"
    km.copy["synthesis.b4.const"] = "input.input"
    layers = {"synthesis.b4.conv1": ("conv1", 0)}
    rgbs = {"synthesis.b4.torgb": "to_rgb1"}
    for j, r in enumerate(_blocks(keys, "synthesis.")[1:]):
        layers[f"synthesis.b{r}.conv0"] = (f"convs.{2 * j}", 2 * j + 1)
        layers[f"synthesis.b{r}.conv1"] = (f"convs.{2 * j + 1}", 2 * j + 2)
        rgbs[f"synthesis.b{r}.torgb"] = f"to_rgbs.{j}"
    for src, (dst, noise_index) in layers.items():
        km.copy[f"{src}.weight"] = f"{dst}.conv.weight"
        km.copy[f"{src}.affine.weight"] = f"{dst}.conv.modulation.weight"
        km.copy[f"{src}.affine.bias"] = f"{dst}.conv.modulation.bias"
        km.copy[f"{src}.bias"] = f"{dst}.activate.bias"
        km.copy[f"{src}.noise_strength"] = f"{dst}.noise.weight"
        km.copy[f"{src}.noise_const"] = f"noises.noise_{noise_index}"
    for src, dst in rgbs.items():
        km.copy[f"{src}.weight"] = f"{dst}.conv.weight"
        km.copy[f"{src}.affine.weight"] = f"{dst}.conv.modulation.weight"
        km.copy[f"{src}.affine.bias"] = f"{dst}.conv.modulation.bias"
        km.copy[f"{src}.bias"] = f"{dst}.bias"
    km.checked = [k for k in keys if k.endswith("resample_filter")]
    return km


def discriminator_key_map(keys: Iterable[str]) -> KeyMap:
    """Source ``D`` (architecture 'resnet') names → the project's ``Discriminator`` names."""
    keys = list(keys)
    km = KeyMap()
    blocks = [r for r in _blocks(keys, "") if r > 4]
    if blocks:
        top = max(blocks)
        km.copy[f"b{top}.fromrgb.weight"] = f"from_rgbs.{top}.0.weight"
        km.copy[f"b{top}.fromrgb.bias"] = f"from_rgbs.{top}.1.bias"
    for r in blocks:
        km.copy[f"b{r}.conv0.weight"] = f"blocks.{r}.conv1.0.weight"
        km.copy[f"b{r}.conv0.bias"] = f"blocks.{r}.conv1.1.bias"
        km.copy[f"b{r}.conv1.weight"] = f"blocks.{r}.conv2.1.weight"
        km.copy[f"b{r}.conv1.bias"] = f"blocks.{r}.conv2.2.bias"
        km.copy[f"b{r}.skip.weight"] = f"blocks.{r}.skip.1.weight"
    km.copy.update({"b4.conv.weight": "final_conv.0.weight", "b4.conv.bias": "final_conv.1.bias",
                    "b4.fc.weight": "final_linear.0.weight", "b4.fc.bias": "final_linear.0.bias",
                    "b4.out.weight": "final_linear.1.weight", "b4.out.bias": "final_linear.1.bias"})
    km.checked = [k for k in keys if k.endswith("resample_filter")]
    return km


def check_complete(km: KeyMap, keys: Iterable[str], what: str) -> None:
    """Every source tensor is used and every mapped one exists: nothing left over, nothing missing."""
    keys = set(keys)
    left = sorted(keys - set(km.copy) - set(km.checked))
    missing = sorted(k for k in km.copy if k not in keys and k != "mapping.w_avg")
    if left or missing:
        parts = []
        if left:
            parts.append(f"unexpected tensors {left[:6]}{' …' if len(left) > 6 else ''}")
        if missing:
            parts.append(f"missing tensors {missing[:6]}{' …' if len(missing) > 6 else ''}")
        raise ModelFileError(f"{what} is not a StyleGAN2 network of the supported layout: {'; '.join(parts)}")


def generator_config(shapes: Mapping[str, tuple[int, ...]], *, lr_mlp: float = DEFAULT_LR_MAPPING,
                     conv_clamp: float | None = None, what: str = "G_ema") -> GeneratorConfig:
    """Architecture read off the tensor shapes of a ``G_ema`` state dict."""
    blocks = _blocks(shapes, "synthesis.")
    n_fc = len([k for k in shapes if re.fullmatch(r"mapping\.fc\d+\.weight", k)])
    if not blocks or blocks[0] != 4 or any(b != 4 * 2 ** i for i, b in enumerate(blocks)):
        raise ModelFileError(f"{what}: synthesis blocks {blocks} are not 4, 8, … px")
    res = blocks[-1]
    if not 8 <= res <= 1024:
        raise ModelFileError(f"{what}: resolution {res} is outside the supported 8–1024 px")
    if n_fc < 1:
        raise ModelFileError(f"{what}: no mapping network layers")
    try:
        z_dim = int(shapes["mapping.fc0.weight"][1])
        w_dim = int(shapes[f"mapping.fc{n_fc - 1}.weight"][0])
        channels = {4: int(shapes["synthesis.b4.const"][0])}
        for r in blocks[1:]:
            channels[r] = int(shapes[f"synthesis.b{r}.conv0.weight"][0])
    except (KeyError, IndexError) as e:
        raise ModelFileError(f"{what} is not a StyleGAN2 generator: missing {e}") from None
    if z_dim != w_dim or any(tuple(shapes[f"mapping.fc{i}.weight"]) != (w_dim, w_dim) for i in range(n_fc)):
        raise ModelFileError(f"{what}: mapping layers of other widths than z_dim = w_dim ({z_dim} → {w_dim}) "
                             "are not supported")
    return GeneratorConfig(resolution=res, style_dim=w_dim, n_mlp=n_fc, channel_max=max(channels.values()),
                           lr_mlp=lr_mlp, channels=channels, conv_clamp=conv_clamp,
                           w_avg="mapping.w_avg" in shapes)


def _check_filters(sd: Mapping[str, torch.Tensor], keys: list[str], what: str) -> None:
    k = make_kernel((1, 3, 3, 1))
    for name in keys:
        if tuple(sd[name].shape) != (4, 4) or not torch.allclose(sd[name].float(), k, atol=1e-6):
            raise ModelFileError(f"{what}: {name} is not the [1,3,3,1] filter this generator implements")


def map_tensors(sd: Mapping[str, torch.Tensor], km: KeyMap, target: Mapping[str, torch.Tensor],
                what: str) -> dict[str, torch.Tensor]:
    """Source tensors under the target names and shapes (same number of elements, else an error).

    The target's FIR kernel buffers are not in the source (it keeps normalised filters, checked
    above); they are derived here: ×4 where they upsample, as they are where they downsample."""
    _check_filters(sd, km.checked, what)
    out = {}
    for dst in target:
        if dst.endswith("blur.kernel") or dst.endswith("upsample.kernel"):
            out[dst] = make_kernel((1, 3, 3, 1)) * 4
        elif dst.endswith(".0.kernel"):  # the discriminator's downsampling blur
            out[dst] = make_kernel((1, 3, 3, 1))
    for src, dst in km.copy.items():
        if src not in sd:
            continue
        t, want = sd[src], target.get(dst)
        if want is None:
            raise ModelFileError(f"{what}: {src} has no place in the architecture (as {dst})")
        if t.numel() != want.numel():
            raise ModelFileError(f"{what}: {src} has shape {tuple(t.shape)}; the architecture needs "
                                 f"{tuple(want.shape)} for {dst}")
        out[dst] = t.detach().float().reshape(want.shape).contiguous()
    return out


# ---------------------------------------------------------------------------- whole networks
def _fail(what: str, detail: str) -> ModelFileError:
    return ModelFileError(f"{what}: {detail}. Supported: {SUPPORTED}")


def _check_generator_tree(G: PersistentObject, what: str) -> tuple[float, float | None]:
    """Refuse every variant the mapping does not implement; return (mapping lr, conv clamp)."""
    if G.class_name != "Generator":
        raise _fail(what, f"the network is a {G.class_name}, not a Generator")
    c_dim = G.attr("c_dim", 0) or 0
    if c_dim:
        raise _fail(what, f"it is a conditional (class-labelled) generator, c_dim = {c_dim}")
    if G.attr("img_channels", 3) != 3:
        raise _fail(what, f"it draws {G.attr('img_channels')} channels, not RGB")
    classes = {m.class_name for _, m in G.walk()}
    if "SynthesisInput" in classes or any(re.match(r"L\d+_", n) for n in G.modules.get(
            "synthesis", G).modules):
        raise _fail(what, "it is a StyleGAN3 (alias-free) generator")
    syn, mapping = G.modules.get("synthesis"), G.modules.get("mapping")
    if syn is None or mapping is None:
        raise _fail(what, f"it has no synthesis/mapping networks (modules: {sorted(G.modules)})")
    lr, clamps = set(), set()
    for name, m in G.walk():
        if m.class_name == "SynthesisBlock" and m.attr("architecture", "skip") != "skip":
            raise _fail(what, f"{name} uses the '{m.attr('architecture')}' architecture (only 'skip' is supported)")
        mapping_fc = name.startswith("mapping.") and m.class_name == "FullyConnectedLayer"
        want = "lrelu" if mapping_fc or m.class_name == "SynthesisLayer" else "linear"
        if m.class_name in ("SynthesisLayer", "FullyConnectedLayer") and m.attr("activation", want) != want:
            raise _fail(what, f"{name} uses the {m.attr('activation')!r} activation (this architecture has {want})")
        if m.class_name in ("SynthesisLayer", "ToRGBLayer"):
            clamps.add(m.attr("conv_clamp"))
        if mapping_fc:
            lr.add(float(m.attr("bias_gain", DEFAULT_LR_MAPPING)))
        elif m.class_name == "FullyConnectedLayer" and float(m.attr("bias_gain", 1.0)) != 1.0:
            raise _fail(what, f"{name} has a learning-rate multiplier of {m.attr('bias_gain')} (affine layers have 1)")
    if len(lr) > 1 or len(clamps) > 1:
        raise _fail(what, f"its layers mix mapping learning rates {sorted(lr)} or conv clamps {clamps}")
    clamp = next(iter(clamps), None)
    return (lr.pop() if lr else DEFAULT_LR_MAPPING), (None if clamp is None else float(clamp))


@dataclass
class ImportedNetwork:
    config: dict
    tensors: dict[str, torch.Tensor]


def import_generator(G: PersistentObject, what: str = "G_ema") -> ImportedNetwork:
    lr, clamp = _check_generator_tree(G, what)
    sd = G.state_dict()
    km = generator_key_map(sd)
    check_complete(km, sd, what)
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    cfg = generator_config(shapes, lr_mlp=lr, conv_clamp=clamp, what=what)
    if G.attr("num_ws") not in (None, 2 * (cfg.resolution.bit_length() - 1) - 2):
        raise _fail(what, f"num_ws = {G.attr('num_ws')} does not fit a {cfg.resolution} px StyleGAN2")
    from ..models.generator import Generator

    with torch.device("meta"):
        target = Generator(cfg).state_dict()
    tensors = map_tensors(sd, km, target, what)
    return ImportedNetwork(cfg.to_dict(), tensors)


def import_discriminator(D: PersistentObject, what: str = "D") -> tuple[ImportedNetwork | None, str | None]:
    """The snapshot's discriminator in the project's layout, or (None, why it was not kept)."""
    if D.class_name != "Discriminator":
        return None, f"it is a {D.class_name}"
    if D.attr("c_dim", 0):
        return None, "it is conditional"
    archs = {m.attr("architecture") for _, m in D.walk() if m.class_name == "DiscriminatorBlock"}
    if archs != {"resnet"}:
        return None, f"its blocks use the {sorted(map(str, archs))} architecture (only 'resnet' is kept)"
    mb = D.modules.get("b4", D).modules.get("mbstd")
    if mb is None or mb.attr("num_channels", 1) != 1:
        return None, "its minibatch-stddev layer is not the standard one"
    sd = D.state_dict()
    km = discriminator_key_map(sd)
    try:
        check_complete(km, sd, what)
        res = int(D.attr("img_resolution"))
        blocks = [r for r in _blocks(sd, "") if r > 4]
        channels = {r: int(sd[f"b{r}.conv0.weight"].shape[0]) for r in blocks}
        channels[4] = int(sd["b4.conv.weight"].shape[0])
        cfg = {"resolution": res, "channels": {str(k): v for k, v in sorted(channels.items())},
               "input_resolutions": [res], "mbstd_group": int(mb.attr("group_size") or 4)}
        from ..training.discriminator import discriminator_from_config

        with torch.device("meta"):
            target = discriminator_from_config(cfg).state_dict()
        tensors = map_tensors(sd, km, target, what)
    except (ModelFileError, KeyError, ValueError, TypeError) as e:
        return None, str(e)
    return ImportedNetwork(cfg, tensors), None
