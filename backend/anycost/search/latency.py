"""Render time of any sub-generator on this machine, predicted from a per-layer lookup table.

MACs predict milliseconds badly: the same work costs very different times at different
resolutions and widths (small maps are dominated by per-call overhead, wide layers by the
weight, and oneDNN picks different kernels per shape). So every layer is timed on this
device at every pair of (input, output) widths the search can give it, running the same
code the renderer runs (the fast CPU path, or the reference path on a GPU), including the
layer's style modulation. A configuration's time is then

    predicted = overhead + scale · Σ layers

where ``overhead`` and ``scale`` are fitted (robustly, Theil–Sen) on whole renders: they
absorb the per-render setup and the difference between a layer timed alone and inside a
pipeline. The predictor's error is always measured out of sample: on other whole renders, or,
when the space is so small that the fit saw every configuration, by leaving each one out of the
fit in turn (leave-one-out) and predicting it.

Timing on a shared machine is noisy, so measurements are taken in passes over every entry
(a load spike then touches all entries alike, not one layer), after a warm-up call that
builds the renderer's weight caches; a sample runs a layer a few times back to back, as a
render does, and each entry keeps its fastest sample (interference only ever adds time). Table
entries are finally made monotone (a wider layer is never predicted cheaper), which only
ever raises an estimate. Tables are cached per architecture and machine fingerprint.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..fsutil import atomic_write
from ..models.generator import Generator
from .cache import architecture_id, latency_cache_path, machine_id, machine_info
from .space import SearchSpace, SubConfig

FORMAT = "anycost-latency-table"
FORMAT_VERSION = 1

Progress = Callable[[str], None] | None


# ---------------------------------------------------------------------------- layer keys
def layer_keys(G: Generator, res: int, channels: Sequence[int]) -> list[str]:
    """The timed units a render at ``res`` with these widths runs, e.g. ``a2:128:64`` (the upsampling
    conv of block 2, 128 → 64 channels), ``b2:64:64``, ``rgb2:64``, ``conv1:512:512``, ``torgb1:512``
    (the 4 px ToRGB); ``sle64:256:64`` for a skip-layer excitation."""
    c = list(channels)
    keys = [f"conv1:{c[0]}:{c[1]}", f"torgb1:{c[1]}"]
    widths = {4: c[1]}
    cin = c[1]
    for b in range(res.bit_length() - 3):
        r = 8 << b
        ca, cb = c[2 + 2 * b], c[3 + 2 * b]
        keys += [f"a{b}:{cin}:{ca}", f"b{b}:{ca}:{cb}"]
        if r in G._sle_src:
            keys.append(f"sle{r}:{widths[G._sle_src[r]]}:{cb}")
        keys.append(f"rgb{b}:{cb}")
        widths[r] = cb
        cin = cb
    return keys


def _parse(key: str) -> tuple[str, list[int]]:
    name, *nums = key.split(":")
    return name, [int(n) for n in nums]


def default_impl(device: torch.device | str) -> str:
    """What ``Generator.synthesize`` runs without gradients: the fast path on CPU, the reference elsewhere."""
    return "fast" if torch.device(device).type == "cpu" else "reference"


# ---------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _LayerBench:
    """Builds a zero-argument callable per layer key that runs that layer once, as the renderer would.

    On the CPU it calls the fast path's own layer functions (private to ``fast_synthesis``): the
    table must time exactly the code that renders, layouts and weight caches included."""

    def __init__(self, G: Generator, impl: str):
        if impl not in ("fast", "reference"):
            raise ValueError(f"impl must be 'fast' or 'reference', got {impl!r}")
        self.G, self.impl = G, impl
        self.device = G._device()
        self.dtype = G.input.input.dtype
        self.w = G.to_w_plus(G.mean_w(n=1000))
        self._inputs: dict[tuple[int, int, int], torch.Tensor] = {}
        if impl == "fast":
            from ..models import fast_synthesis as fs

            self.fs = fs
            self.kernels = fs._Kernels(G, self.device, self.dtype, self.dtype)

    def _x(self, c: int, size: int, raw: bool = False) -> torch.Tensor:
        """An input map, shared between keys of the same shape; laid out as the fast path lays out features."""
        key = (c, size, int(raw))
        if key not in self._inputs:
            g = torch.Generator().manual_seed(c * 7919 + size)
            x = torch.randn(1, c, size, size, generator=g).to(self.device, self.dtype)
            self._inputs[key] = self.fs._layout(x) if self.impl == "fast" and not raw else x
        return self._inputs[key]

    def runner(self, key: str) -> Callable[[], object]:
        G = self.G
        name, nums = _parse(key)
        if name == "conv1":
            c0, c1 = nums
            return self._conv(G.conv1, c0, c1, 4, slot=0, noise=0, gain=1.0, constant=True)
        if name == "torgb1":
            return self._rgb(G.to_rgb1, nums[0], 4, slot=1, skip=False)
        if name.startswith("rgb"):
            b = int(name[3:])
            return self._rgb(G.to_rgbs[b], nums[0], 8 << b, slot=3 + 2 * b, skip=True)
        if name.startswith("sle"):
            return self._sle(int(name[3:]), *nums)
        b = int(name[1:])
        cin, cout = nums
        if name[0] == "a":
            return self._conv(G.convs[2 * b], cin, cout, 4 << b, slot=1 + 2 * b, noise=2 * b + 1)
        return self._conv(G.convs[2 * b + 1], cin, cout, 8 << b, slot=2 + 2 * b, noise=2 * b + 2)

    def _conv(self, layer, cin: int, cout: int, size: int, *, slot: int, noise: int,
              gain: float = math.sqrt(2.0), constant: bool = False):
        G = self.G
        style = self.w[:, slot]
        nz = G.noises.get(noise)
        if self.impl == "reference":
            if constant:
                return lambda: layer(G.input(1, cin), style, nz, cout)
            x = self._x(cin, size)
            return lambda: layer(x, style, nz, cout)
        fs, k = self.fs, self.kernels
        if constant:  # conv1 reads the constant input, as the renderer does
            def run():
                x = fs._layout(G.input.input[:, :cin].to(k.dtype))
                return fs._styled_conv(G, layer, [x], gain, fs._styles(layer.conv, style, cin), 0, nz, 1, cout, k)
            return run
        x = self._x(cin, size)
        return lambda: fs._styled_conv(G, layer, [x], gain, fs._styles(layer.conv, style, cin), 0, nz, 1, cout, k)

    def _rgb(self, layer, cin: int, size: int, *, slot: int, skip: bool):
        style = self.w[:, slot]
        x = self._x(cin, size)
        sk = self._x(3, size // 2, raw=True) if skip else None
        if self.impl == "reference":
            return lambda: layer(x, style, sk)
        fs, k, G = self.fs, self.kernels, self.G
        return lambda: fs._to_rgb(G, layer, x, math.sqrt(2.0), fs._styles(layer.conv, style, cin), 0, sk, k)

    def _sle(self, r: int, c_lo: int, c_hi: int):
        G = self.G
        module = G.sle[str(r)]
        lo = self._x(c_lo, G._sle_src[r])
        hi = self._x(c_hi, r)
        work = hi.clone()
        if self.impl == "reference":
            return lambda: module(hi, lo)

        def run():
            work.copy_(hi)  # the excitation multiplies in place; start from the same values every time
            return self.fs._sle(module, work, lo, math.sqrt(2.0))
        return run


def measure_layers(G: Generator, keys: Iterable[str], *, impl: str | None = None, passes: int = 7,
                   min_samples: int = 3, slow_ms: float = 100.0, burst_ms: float = 4.0, seed: int = 0,
                   progress: Progress = None) -> dict[str, float]:
    """Milliseconds per call of every layer key.

    After a warm-up call (which builds the renderer's weight caches), ``passes`` passes go over
    all keys in a shuffled order; keys slower than ``slow_ms`` stop after ``min_samples``
    samples. A sample runs the layer several times back to back (about ``burst_ms`` in all),
    as it runs inside a render, where the worker threads stay awake from one layer to the next;
    a lone call would also time waking them. Each key keeps its fastest sample: interference
    from other processes only ever adds time (and one preempted thread stalls the whole layer),
    so the minimum is the reproducible figure. The fit on whole renders uses the same statistic.
    """
    keys = sorted(set(keys))
    impl = impl or default_impl(G._device())
    bench = _LayerBench(G, impl)
    device = bench.device
    best: dict[str, float] = {}
    count = dict.fromkeys(keys, 0)
    rng = random.Random(seed)
    with torch.inference_mode():
        runners = {k: bench.runner(k) for k in keys}
        t_start = time.perf_counter()
        for k, run in runners.items():
            run()
            _sync(device)
            t0 = time.perf_counter()
            run()
            _sync(device)
            best[k] = (time.perf_counter() - t0) * 1000
        for p in range(passes):
            order = list(keys)
            rng.shuffle(order)
            for k in order:
                if count[k] >= min_samples and best[k] > slow_ms:
                    continue
                reps = int(min(64, max(1, burst_ms // max(best[k], 1e-3))))
                run = runners[k]
                t0 = time.perf_counter()
                for _ in range(reps):
                    run()
                _sync(device)
                best[k] = min(best[k], (time.perf_counter() - t0) * 1000 / reps)
                count[k] += 1
            if progress:
                progress(f"layer timing pass {p + 1}/{passes} ({time.perf_counter() - t_start:.1f} s)")
    return best


def measure_configs(G: Generator, configs: Sequence[SubConfig], *, passes: int = 5,
                    impl: str | None = None, dtype: torch.dtype | None = None) -> list[tuple[float, float]]:
    """(fastest, median) wall ms of whole renders of one image (the editor's call), measured in
    interleaved passes after a warm-up render of each."""
    impl = impl or default_impl(G._device())
    device = G._device()
    w = G.to_w_plus(G.mean_w(n=1000))
    times: list[list[float]] = [[] for _ in configs]
    with torch.inference_mode():
        for c in configs:
            G.synthesize(w, res=c.res, channels=list(c.channels), impl=impl, dtype=dtype)
        for _ in range(max(1, passes)):
            for i, c in enumerate(configs):
                _sync(device)
                t0 = time.perf_counter()
                G.synthesize(w, res=c.res, channels=list(c.channels), impl=impl, dtype=dtype)
                _sync(device)
                times[i].append((time.perf_counter() - t0) * 1000)
    return [(min(t), statistics.median(t)) for t in times]


# ---------------------------------------------------------------------------- the table
def _envelope(raw: dict[str, float]) -> dict[str, float]:
    """Monotone envelope per layer: a key's value becomes the largest value among keys of the same
    layer whose widths are all ≤ its own (timing noise must not make a wider layer look cheaper)."""
    by_layer: dict[str, list[tuple[list[int], str]]] = {}
    for k in raw:
        name, nums = _parse(k)
        by_layer.setdefault(name, []).append((nums, k))
    out = {}
    for items in by_layer.values():
        for nums, k in items:
            out[k] = max(raw[k2] for n2, k2 in items if all(a <= b for a, b in zip(n2, nums, strict=True)))
    return out


def _theil_sen(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Robust line fit y ≈ a + b·x: b = median pairwise slope, a = median residual."""
    slopes = [(ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(len(xs)) for j in range(i + 1, len(xs))
              if abs(xs[j] - xs[i]) > 1e-3 * max(abs(xs[j]), abs(xs[i]), 1e-9)]
    b = statistics.median(slopes) if slopes else 1.0
    b = min(max(b, 0.5), 2.0)  # a sane range: anything outside means the samples were disturbed
    a = statistics.median([y - b * x for x, y in zip(xs, ys, strict=True)])
    return a, b


@dataclass
class PredictorCheck:
    """Predicted against measured whole-render times of configurations the fit did not see."""

    rows: list[dict] = field(default_factory=list)  # label, predicted_ms, measured_ms, rel_error
    method: str = "held-out"  # or 'leave-one-out' (each configuration predicted by a fit without it)

    @property
    def errors(self) -> list[float]:
        return [abs(r["rel_error"]) for r in self.rows]

    def summary(self) -> dict:
        e = sorted(self.errors)
        if not e:
            return {"n": 0, "method": self.method}
        p90 = e[min(len(e) - 1, int(math.ceil(0.9 * len(e))) - 1)]
        return {"n": len(e), "method": self.method, "median_rel_error": statistics.median(e), "p90_rel_error": p90,
                "max_rel_error": e[-1], "mean_signed_rel_error": statistics.mean(r["rel_error"] for r in self.rows)}


@dataclass
class LatencyTable:
    architecture: str
    machine: dict
    impl: str
    raw: dict[str, float] = field(default_factory=dict)  # layer key → fastest sample (ms), as measured
    overhead_ms: float = 0.0
    scale: float = 1.0
    calibrated: bool = False
    check: dict = field(default_factory=dict)  # PredictorCheck.summary() of the last check
    created: str = ""

    def __post_init__(self) -> None:
        self.layers = _envelope(self.raw)

    @property
    def machine_id(self) -> str:
        return machine_id(self.machine)

    def add(self, measured: dict[str, float]) -> None:
        self.raw.update(measured)
        self.layers = _envelope(self.raw)

    def layer_sum(self, G: Generator, res: int, channels: Sequence[int]) -> float:
        try:
            return sum(self.layers[k] for k in layer_keys(G, res, channels))
        except KeyError as e:
            raise KeyError(f"layer {e.args[0]} was not timed; measure it first (LatencyTable.missing)") from None

    def predict(self, G: Generator, res: int, channels: Sequence[int]) -> float:
        s = self.layer_sum(G, res, channels)
        return max(self.overhead_ms + self.scale * s, 0.25 * s)

    def predict_config(self, G: Generator, cfg: SubConfig) -> float:
        return self.predict(G, cfg.res, cfg.channels)

    def fits(self, G: Generator) -> bool:
        return self.architecture == architecture_id(G)

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": FORMAT_VERSION, "architecture": self.architecture,
                "machine": self.machine, "impl": self.impl, "overhead_ms": self.overhead_ms, "scale": self.scale,
                "calibrated": self.calibrated, "check": self.check, "created": self.created, "layers_ms": self.raw}

    @classmethod
    def from_dict(cls, d: dict) -> LatencyTable:
        if d.get("format") != FORMAT or d.get("version") != FORMAT_VERSION:
            raise ValueError(f"not a version-{FORMAT_VERSION} {FORMAT} file")
        return cls(architecture=str(d["architecture"]), machine=dict(d["machine"]), impl=str(d["impl"]),
                   raw={str(k): float(v) for k, v in d["layers_ms"].items()},
                   overhead_ms=float(d.get("overhead_ms", 0.0)), scale=float(d.get("scale", 1.0)),
                   calibrated=bool(d.get("calibrated", False)), check=dict(d.get("check") or {}),
                   created=str(d.get("created", "")))

    def save(self, path: str | Path) -> Path:
        text = json.dumps(self.to_dict(), indent=1, sort_keys=True)
        return atomic_write(path, lambda tmp: Path(tmp).write_text(text))

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        return cls.from_dict(json.loads(Path(path).read_text()))


# ---------------------------------------------------------------------------- fit and check
def _fit(G: Generator, table: LatencyTable, configs: Sequence[SubConfig], measured: Sequence[float]) -> None:
    sums = [table.layer_sum(G, c.res, c.channels) for c in configs]
    table.overhead_ms, table.scale = _theil_sen(sums, measured)
    table.calibrated = True


def _row(c: SubConfig, predicted: float, fastest: float, median: float) -> dict:
    return {"label": c.label(), "res": c.res, "channels": list(c.channels), "predicted_ms": predicted,
            "measured_ms": fastest, "measured_median_ms": median, "rel_error": (predicted - fastest) / fastest}


def calibrate(G: Generator, table: LatencyTable, configs: Sequence[SubConfig], *,
              held_out: Sequence[SubConfig] = (), passes: int = 5) -> PredictorCheck:
    """Fit ``overhead_ms`` and ``scale`` on whole renders of ``configs`` (distinct) and measure the
    predictor's error out of sample: on ``held_out`` when given, else leave-one-out over ``configs``.

    Fit and check renders are timed in the same interleaved passes, so a change of load between
    them does not show up as predictor error. The summary is kept in ``table.check``."""
    configs = list(dict.fromkeys(configs))
    held_out = [c for c in dict.fromkeys(held_out) if c not in set(configs)]
    measured = measure_configs(G, configs + held_out, passes=passes, impl=table.impl)
    fit_ms = [m[0] for m in measured[: len(configs)]]
    if held_out:
        _fit(G, table, configs, fit_ms)
        rows = [_row(c, table.predict_config(G, c), *m)
                for c, m in zip(held_out, measured[len(configs):], strict=True)]
        check = PredictorCheck(rows, "held-out")
    else:
        rows = []
        if len(configs) > 1:  # each predicted by a fit on the others (one other: its offset, scale 1)
            for i, c in enumerate(configs):
                _fit(G, table, configs[:i] + configs[i + 1:], fit_ms[:i] + fit_ms[i + 1:])
                rows.append(_row(c, table.predict_config(G, c), *measured[i]))
        _fit(G, table, configs, fit_ms)
        check = PredictorCheck(rows, "leave-one-out" if rows else "none")
    table.check = check.summary()
    return check


def sample_configs(space: SearchSpace, n: int, seed: int) -> list[SubConfig]:
    """``n`` distinct configurations spread over the space (random, seeded), for fits and checks."""
    rng = random.Random(seed)
    out: dict[SubConfig, None] = {}
    tries = 0
    while len(out) < min(n, space.size()) and tries < 50 * n:
        out.setdefault(space.random(rng), None)
        tries += 1
    return list(out)


def latency_table(G: Generator, space: SearchSpace, *, cache: bool = True, remeasure: bool = False,
                  passes: int = 7, check_configs: int = 8, seed: int = 0,
                  progress: Progress = None) -> tuple[LatencyTable, PredictorCheck | None]:
    """The lookup table for ``G`` on its device covering ``space``: from the cache when it has every
    layer the space needs, else measured (only the missing layers), fitted and checked, then cached.

    Returns the table and the check made now (None when everything came from the cache).
    """
    device = G._device()
    path = latency_cache_path(G, device)
    info = machine_info(device)
    table = None
    if cache and not remeasure and path.is_file():
        try:
            table = LatencyTable.load(path)
        except (OSError, ValueError, KeyError, TypeError):
            table = None  # unreadable or old: measure again
        if table is not None and (not table.fits(G) or table.machine_id != machine_id(info)):
            table = None
    if table is None:
        table = LatencyTable(architecture_id(G), info, default_impl(device))
    fit_configs = list(dict.fromkeys(space.uniform_configs() + sample_configs(space, 4, seed + 1)))
    fit_set = set(fit_configs)
    held_out = [c for c in sample_configs(space, check_configs + len(fit_set), seed + 2) if c not in fit_set]
    held_out = held_out[:check_configs]
    missing = needed_keys(G, space) - set(table.layers)
    if not missing and table.calibrated:
        return table, None
    if progress:
        progress(f"timing {len(missing)} layer shapes on {info['device']}")
    table.add(measure_layers(G, missing, impl=table.impl, passes=passes, seed=seed, progress=progress))
    if progress:
        how = f"checking on {len(held_out)} others" if held_out else "checking each by leaving it out of the fit"
        progress(f"fitting on {len(fit_configs)} whole renders, {how}")
    check = calibrate(G, table, fit_configs, held_out=held_out)
    table.created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if cache:
        table.save(path)
    return table, check


def needed_keys(G: Generator, space: SearchSpace) -> set[str]:
    """Every layer key a configuration of ``space`` can run."""
    if space.kind != "flexible":
        return {k for c in space.uniform_configs() for k in layer_keys(G, c.res, c.channels)}
    cands = space.candidates
    keys = {f"conv1:{a}:{b}" for a in cands[0] for b in cands[1]} | {f"torgb1:{b}" for b in cands[1]}
    in_idx = {4: 1}
    for b in range(max(space.resolutions).bit_length() - 3):
        r = 8 << b
        i_in, i_a, i_b = in_idx[r // 2], 2 + 2 * b, 3 + 2 * b
        keys |= {f"a{b}:{x}:{y}" for x in cands[i_in] for y in cands[i_a]}
        keys |= {f"b{b}:{x}:{y}" for x in cands[i_a] for y in cands[i_b]}
        if r in G._sle_src:
            keys |= {f"sle{r}:{x}:{y}" for x in cands[in_idx[G._sle_src[r]]] for y in cands[i_b]}
        keys |= {f"rgb{b}:{y}" for y in cands[i_b]}
        in_idx[r] = i_b
    return keys
