"""The headless editing API: an ``Editor`` holds a model; an ``EditSession`` holds one region.

    editor = Editor("anycost-demo")
    session = editor.open("portrait.png")          # align + instant encoder projection
    session.project(steps=100)                     # optional refinement
    session.set(smile=0.8, age=-0.4)               # sliders in [-1, 1]
    preview = session.render("preview")            # cheap sub-generator, aligned crop
    rgba = session.result()                        # full render pasted back, region size

Everything the service and the CLI do goes through these two classes.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import torch

from ..directions import DirectionSet, directions_in_model, load_directions_file, load_official_boundaries
from ..directions.regional import render_sliders, split_sliders
from ..errors import InputError
from ..fsutil import atomic_write
from ..imageio import images_to_tensor
from ..io.checkpoint import open_model
from ..models.channels import STANDARD_RATIOS
from ..models.encoder import Encoder
from ..models.generator import Generator
from ..search.cache import cached_table, cached_table_path
from ..search.space import model_space_kind
from .align import Alignment, Framing, align_face
from .notices import model_notices
from .paste import BLEND_MODES, paste_back
from .preview_choice import (
    DEFAULT_PREVIEW_BUDGET_MS,
    PreviewChoice,
    decide_preview_precision,
    lower_resolution,
    parse_cost,
    pick_draft,
    pick_preview,
)
from .project import CancelCheck, ProjectionSettings, ProjectionStep, Projector
from .projection_tuning import settings_for_model
from .region import DEFAULT_MAX_PIXELS, MIN_SIDE, Region, check_size
from .render import FULL, Cost


class Editor:
    """A loaded model (generator, optional encoder, directions) that opens editing sessions."""

    def __init__(self, model: str | os.PathLike | None = None, *, device: str | torch.device = "cpu",
                 preview_budget_ms: float = DEFAULT_PREVIEW_BUDGET_MS, use_lpips: bool = True,
                 directions: str | os.PathLike | None = None, search_table: str | os.PathLike | None = None,
                 use_search_cache: bool = True, blend: str = "delta", max_pixels: int = DEFAULT_MAX_PIXELS,
                 direction_layers: list[int] | None = None, preview_precision: str = "auto",
                 commit_precision: str = "fp32"):
        from ..registry import DEFAULT_MODEL, KNOWN_MODELS, resolve_model

        name = DEFAULT_MODEL if model is None else model
        self._model_arg = name  # the registry's face flag is looked up by it (see is_face_model)
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < MIN_SIDE * MIN_SIDE:
            raise InputError(f"max_pixels must be an integer of at least {MIN_SIDE * MIN_SIDE}, got {max_pixels!r}")
        # Largest region open() accepts: the paste-back's float buffers grow with it.
        self.max_pixels = max_pixels
        self.path = resolve_model(name)
        self.device = torch.device(device)
        spec = KNOWN_MODELS.get(str(name))
        mf = open_model(self.path, expect=spec.architecture if spec else None)
        self.generator: Generator = mf.generator(self.device)
        self.encoder: Encoder | None = mf.encoder(self.device)
        self.directions: DirectionSet = directions_in_model(mf)
        self.info: dict = dict(mf.info)
        # The sub-generators the model was trained for: a plain StyleGAN2 has full width only, so its
        # previews come from its intermediate resolutions.
        self.space_kind = model_space_kind(self.info, spec.channel_configs if spec else None)
        self.preview_ratios: tuple[float, ...] = (
            (1.0,) if self.space_kind == "full"
            else tuple(float(r) for r in self.info.get("channel_ratios") or STANDARD_RATIOS))
        self.name = str(self.info.get("name", Path(self.path).stem))
        from .domain import Domain

        self.domain = Domain.from_info(self.info)
        # where the model's own images put the face (`anycost fit-framing`); None: the FFHQ crop
        self.framing = Framing.from_info(self.info)
        if preview_precision not in ("auto", "fp32", "bf16") or commit_precision not in ("fp32", "bf16"):
            raise InputError("preview precision must be auto, fp32 or bf16; commit precision fp32 or bf16")
        # previews in bfloat16 where the CPU has it and it costs little (decided with the preview choice);
        # commits stay float32 unless asked
        self.preview_precision = preview_precision
        self.commit_dtype = torch.bfloat16 if commit_precision == "bf16" else None
        self.precision_report: dict | None = None
        self.preview_budget_ms = preview_budget_ms
        if blend not in BLEND_MODES:
            raise InputError(f"blend must be one of {', '.join(BLEND_MODES)}, got {blend!r}")
        # "delta" adds only the edit to the original pixels (keeps detail the generator cannot
        # reproduce); "replace" pastes the render itself.
        self.blend = blend
        # the model may record how firmly refinement holds to its encoder's answer (`anycost tune-projection`)
        self.projection = settings_for_model(self.info, use_lpips=use_lpips)
        self._projector = Projector(self.generator, self.encoder, settings=self.projection)
        self._preview: PreviewChoice | None = None
        self.use_search_cache = use_search_cache
        self.search_table = None
        if search_table is not None:
            from ..search.table import SearchTable

            self.search_table = SearchTable.load(search_table).check_fits(self.generator)
        if directions is not None:
            self.load_directions(directions, layers=direction_layers)

    @property
    def notices(self) -> list[str]:
        """What the user should be told about this model before editing with it (see ``notices``)."""
        return model_notices(self.info, self.space_kind, has_encoder=self.encoder is not None)

    @property
    def is_face_model(self) -> bool:
        """Whether faces are detected and aligned: the model file's info["face"]; for a file without it,
        the registered model its name or file stands for (cars are not faces); otherwise True."""
        if "face" in self.info:
            return bool(self.info["face"])
        from ..registry import spec_for

        spec = spec_for(self._model_arg) or spec_for(self.path) or spec_for(str(self.info.get("name", "")))
        return spec.face if spec is not None else True

    def load_directions(self, path: str | os.PathLike, *, layers: list[int] | None = None) -> DirectionSet:
        """Add directions from a file (project .safetensors/.npy, or an official boundary .pt).

        ``layers`` sets the style slots they act on (official boundaries, fitted in W, default to all
        slots; editing only the coarse ones, e.g. 0-7, keeps colour and texture). Nothing is added
        unless every direction fits this model."""
        p = Path(path)
        loaded = (load_official_boundaries(p, layers=layers) if p.suffix in (".pt", ".pth")
                  else load_directions_file(p, fits=(self.generator.n_style, self.generator.style_dim)))
        if layers is not None:
            loaded = DirectionSet(dataclasses.replace(d, layers=list(layers)) for d in loaded.values())
        for d in loaded.values():
            d.check_fits(self.generator.n_style, self.generator.style_dim)
        self.directions = self.directions.merged(loaded)
        return loaded

    def check_sliders(self, values: Mapping[str, float]) -> dict[str, float]:
        """Slider values as floats, or an InputError naming the slider and what it takes: not a map, no
        directions, an unknown name (the message lists the valid ones), a value that is not a finite number
        (bools and strings are not) or one outside the direction's slider range. The one check of slider
        values: the service answers its refusals to clients as ``bad_input``."""
        if not isinstance(values, Mapping):
            raise InputError("sliders must be a map of name → number")
        dirs = self.directions
        if values and not len(dirs):
            raise InputError(f"model {self.name!r} has no edit directions; load a direction file")
        checked = {}
        for name, v in values.items():
            if not isinstance(name, str) or name not in dirs:  # names from a client may be anything
                raise InputError(f"unknown slider {str(name)[:40]!r}; valid sliders: {', '.join(dirs)}")
            lo, hi = dirs[name].slider_range
            number = _finite(v)
            if number is None:
                raise InputError(f"slider {name!r} must be a finite number in [{lo:g}, {hi:g}], got {repr(v)[:40]}")
            if not lo <= number <= hi:
                raise InputError(f"slider {name!r} must be in [{lo:g}, {hi:g}], got {number:g}")
            checked[name] = number
        return checked

    def check_latent(self, w_plus: torch.Tensor | np.ndarray) -> torch.Tensor:
        """A W+ latent for this model as (1, n_style, style_dim) float32, or an InputError."""
        shape = (self.generator.n_style, self.generator.style_dim)
        try:
            w = torch.as_tensor(w_plus if isinstance(w_plus, torch.Tensor) else np.asarray(w_plus)).float()
        except (TypeError, ValueError, RuntimeError) as e:
            raise InputError(f"latent is not a numeric array: {e}") from None
        if w.ndim == 2:
            w = w[None]
        if tuple(w.shape) != (1, *shape):
            raise InputError(f"latent has shape {tuple(w.shape)}; this model needs (1, {shape[0]}, "
                             f"{shape[1]}) (or without the leading 1)")
        if not torch.isfinite(w).all():
            raise InputError("latent has non-finite values")
        return w

    def read_latent(self, path: str | os.PathLike) -> torch.Tensor:
        """A latent saved by ``EditSession.save_latent`` (.npy), checked against this model."""
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise InputError(f"cannot read latent file {os.fspath(path)}: {e}") from e
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
            raise InputError(f"latent file {os.fspath(path)} does not hold a numeric array")
        try:
            return self.check_latent(arr)
        except InputError as e:
            raise InputError(f"latent file {os.fspath(path)}: {e}") from None

    def preview_cost(self) -> Cost:
        """The sub-generator that fits the preview budget on this machine (chosen once)."""
        return self.preview_choice().cost

    @property
    def preview_dtype(self) -> torch.dtype | None:
        """bfloat16 when previews render in it (see ``preview_choice``), else None (float32)."""
        report = self.precision_report or {}
        return torch.bfloat16 if report.get("precision") == "bf16" else None

    def warm_up(self) -> float:
        """Render once at the preview cost and at full cost through the whole edit path (encode, render,
        paste back), so the fast path's weight caches and the allocator are built before the first
        user waits: a service's first preview and first commit then cost what later ones do. Returns
        the seconds it took."""
        import time

        t0 = time.perf_counter()
        size = self.generator.resolution
        grey = np.full((size, size, 3), 128, np.uint8)
        s = self.open(grey, align=False)
        self.preview_choice()
        for cost, dtype in (("preview", self.preview_dtype), ("full", self.commit_dtype)):
            s.composite(s.render(cost, dtype=dtype), reference=s.reference(cost, dtype=dtype), blend=self.blend)
        return time.perf_counter() - t0

    def preview_choice(self, *, recheck: bool = False) -> PreviewChoice:
        """The preview sub-generator and its measured time: the best entry that fits the budget here
        of the search table given, else of the table cached for this model and machine by ``anycost
        search`` (any entry searched for at most the budget), else the richest uniform ratio that fits.

        ``recheck``: choose again if the cached table's file changed since it was read (a search run
        while this editor lives takes effect from the next session)."""
        if self._preview is None or (recheck and self._search_cache_changed()):
            table = self.search_table
            if table is None and self.use_search_cache:
                table = self._read_search_cache()
            if self.precision_report is None:
                self.precision_report = decide_preview_precision(self.generator, self.preview_budget_ms,
                                                                 self.preview_ratios, self.preview_precision)
            self._preview = pick_preview(self.generator, self.preview_budget_ms, table, self.preview_ratios,
                                         dtype=self.preview_dtype,
                                         speedup=float(self.precision_report.get("speedup") or 1.0))
        return self._preview

    def _search_cache_stamp(self) -> tuple[Path, int | None]:
        """The cached table's path (found once: it hashes the weights) and its modification time."""
        path = getattr(self, "_search_cache_path", None)
        if path is None:
            path = self._search_cache_path = cached_table_path(self.generator)
        try:
            return path, path.stat().st_mtime_ns
        except OSError:
            return path, None

    def _read_search_cache(self):
        path, self._search_cache_mtime = self._search_cache_stamp()
        return cached_table(self.generator, path=path)

    def _search_cache_changed(self) -> bool:
        if self.search_table is not None or not self.use_search_cache:
            return False
        return self._search_cache_stamp()[1] != getattr(self, "_search_cache_mtime", None)

    def draft_cost(self, cost: Cost | None = None) -> Cost:
        """What a draft of a preview at ``cost`` (default: the chosen preview) renders: for the chosen preview
        ``pick_draft`` (a quarter of its time here), chosen once per preview choice and timed where it is
        first asked for (the service's render thread); for another cost, its next lower resolution."""
        choice = self.preview_choice()
        if cost is not None and cost != choice.cost:
            return lower_resolution(cost, self.generator)
        cached = getattr(self, "_draft", None)
        if cached is None or cached[0] is not choice:
            cached = self._draft = (choice, pick_draft(self.generator, choice, self.preview_ratios,
                                                       dtype=self.preview_dtype))
        return cached[1]

    def set_preview(self, choice: PreviewChoice) -> None:
        """Switch previews to another sub-generator (e.g. when a background search finishes)."""
        choice.cost.check(self.generator)
        self._preview = choice

    def cost(self, spec: str | Cost | None) -> Cost:
        """The render cost ``spec`` names (``full``, ``preview``, RES, RATIO or RES:RATIO, or a ``Cost``) for
        this model, or an InputError saying what it accepts. The one check of costs: the service answers
        its refusals to clients as ``bad_input``."""
        if spec is not None and not isinstance(spec, str | Cost):
            raise InputError(f"a cost must be 'full', 'preview' or RES:RATIO (e.g. 256:0.5), got {repr(spec)[:40]}")
        if spec is None or spec == "full":
            return FULL
        if isinstance(spec, Cost):
            return spec.check(self.generator)
        text = str(spec).strip().lower()
        if text == "preview":
            return self.preview_cost()
        if text.endswith(":flexible"):  # how a searched preview is reported; accepted back
            p = self.preview_cost()
            if isinstance(p.channels, tuple) and text == f"{p.res or self.generator.resolution}:flexible":
                return p
            raise InputError(f"{spec!r} is not the current preview sub-generator; ask for 'preview'")
        return parse_cost(str(spec), self.generator, preview_budget_ms=self.preview_budget_ms,
                          ratios=self.preview_ratios)

    def open(self, image: Region | str | os.PathLike | np.ndarray, mask: np.ndarray | str | os.PathLike | None = None,
             *, align: bool = True, landmarks=None) -> EditSession:
        """Start editing a region: align it and take the encoder's instant projection.

        ``image`` is a file path, a ``Region`` or a uint8 array; ``mask`` a uint8/boolean array or a mask
        image file (white = edit). Regions over ``max_pixels`` are refused."""
        limit = self.max_pixels
        if isinstance(image, Region):
            check_size(image.width, image.height, limit)
            region = image if mask is None else image.with_mask(mask, max_pixels=limit)
        elif isinstance(image, np.ndarray):
            region = Region.from_array(image, max_pixels=limit)
            if mask is not None:
                region = region.with_mask(mask, max_pixels=limit)
        elif isinstance(mask, np.ndarray):
            region = Region.from_file(image, max_pixels=limit).with_mask(mask, max_pixels=limit)
        else:
            region = Region.from_file(image, mask_path=mask, max_pixels=limit)
        face = self.is_face_model
        alignment = align_face(region, self.generator.resolution, use_landmarks=align and face,
                               landmarks=landmarks, framing=self.framing)
        if align and not face and landmarks is None:
            alignment.notice = (f"{self.name!r} is not a face model, so no face is looked for; "
                                f"using a centred square crop of the region.")
        return EditSession(self, region, alignment)


class EditSession:
    """One region being edited: its alignment, its projected latent and the current sliders."""

    def __init__(self, editor: Editor, region: Region, alignment: Alignment):
        self.editor = editor
        self.region = region
        self.alignment = alignment
        self.target = images_to_tensor(alignment.image)
        self.target = self.target.to(editor.device)
        self.w_base: torch.Tensor = editor._projector.encode(self.target)
        self.w_encoder = self.w_base.clone()
        self.sliders: dict[str, float] = {}
        self.last_projection: ProjectionStep | None = None
        self._references: dict[str, torch.Tensor] = {}  # unedited renders per cost, for colour matching
        # per cost, the last render under the regional sliders (a draft and a preview cost may alternate)
        self._under: dict[str, tuple[tuple, torch.Tensor]] = {}

    @property
    def notice(self) -> str | None:
        """A sentence for the user when alignment fell back to a plain crop."""
        return self.alignment.notice

    @property
    def domain_notice(self) -> str | None:
        """A sentence when this face is far from what the model can draw (``editing.domain``); None when it
        is not, or when the model records no domain or has no encoder (computed once: one full render)."""
        if not hasattr(self, "_domain_notice"):
            dom, self._domain_notice = self.editor.domain, None
            if dom is not None and self.editor.encoder is not None:
                from .domain import encoder_fit

                self.encoder_fit = encoder_fit(self)
                self._domain_notice = dom.notice(self.encoder_fit)
        return self._domain_notice

    @property
    def notices(self) -> list[str]:
        """Everything the user should read about this face before trusting an edit of it."""
        return [n for n in (self.alignment.notice, self.domain_notice) if n]

    @property
    def needs_confirmation(self) -> bool:
        """Apply should ask first: a face model found no face here, or the face is beyond the model."""
        return self.alignment.face_found is False or self.domain_notice is not None

    # ---------------------------------------------------------------- projection
    def iter_project(self, steps: int | None = None, *, time_budget: float | None = None,
                     cancel: CancelCheck = None, **overrides) -> Iterator[ProjectionStep]:
        """Refine the projection from the current latent (the encoder's answer, an earlier refinement or a
        loaded latent), pulled towards the encoder's answer; yields progress and the session follows along."""
        base = self.editor.projection
        fields = {**base.__dict__, **overrides}
        if steps is not None:
            fields["steps"] = int(steps)
        if time_budget is not None:
            fields["time_budget"] = float(time_budget)
        settings = ProjectionSettings(**fields)
        for step in self.editor._projector.iter_project(self.target, w_init=self.w_base, anchor=self.w_encoder,
                                                        cancel=cancel, settings=settings):
            self.w_base = step.w_plus
            self._references.clear()
            self._under.clear()
            self.last_projection = step
            yield step

    def project(self, steps: int | None = None, **kw) -> ProjectionStep:
        last = None
        for last in self.iter_project(steps, **kw):  # noqa: B007 - the last step is the answer
            pass
        assert last is not None
        return last

    def set_latent(self, w_plus: torch.Tensor | np.ndarray) -> None:
        self.w_base = self.editor.check_latent(w_plus).to(self.editor.device)
        self._references.clear()
        self._under.clear()

    def save_latent(self, path: str | os.PathLike) -> Path:
        """Save the projected latent (without slider edits) as .npy, atomically."""
        arr = self.w_base.detach().cpu().numpy()[0]
        return atomic_write(path, lambda tmp: np.save(tmp, arr), suffix=".npy")

    def load_latent(self, path: str | os.PathLike) -> None:
        self.set_latent(self.editor.read_latent(path))

    # ---------------------------------------------------------------- sliders
    def set(self, **values: float) -> None:
        self.set_sliders(values)

    def set_sliders(self, values: Mapping[str, float], *, replace: bool = False) -> None:
        """Set slider values in [-1, 1] (scaled per direction); unknown names list the valid ones."""
        checked = self.editor.check_sliders(values)
        self.sliders = checked if replace else {**self.sliders, **checked}

    def reset(self) -> None:
        self.sliders = {}

    def latent(self, sliders: Mapping[str, float] | None = None) -> torch.Tensor:
        """W+ of the projection with the slider edits applied."""
        values = self.sliders if sliders is None else sliders
        values = {k: v for k, v in values.items() if v}
        if not values:
            return self.w_base
        return self.editor.directions.apply(self.w_base, values)

    # ---------------------------------------------------------------- rendering
    @torch.inference_mode()
    def render(self, cost: str | Cost | None = "preview", sliders: Mapping[str, float] | None = None, *,
               cancel: Callable[[], bool] | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The edited aligned crop at ``cost``: (1, 3, r, r) in [-1, 1]. ``cancel`` may abandon it between
        layers (``RenderCancelled``); ``dtype`` bfloat16 renders a preview in it (``Editor.preview_dtype``)."""
        c = self.editor.cost(cost)
        values = self.sliders if sliders is None else sliders
        kw = {"noise": "const", "cancel": cancel, "dtype": dtype, **c.render_kwargs()}
        G, dirs = self.editor.generator, self.editor.directions
        if not split_sliders(dirs, values)[1]:  # no regional slider set: one plain render
            return G.synthesize(self.latent(values), **kw)

        def under(plain: dict[str, float]) -> torch.Tensor:
            # the render without the regional sliders: the unedited one, or the last one for these sliders
            # (dragging a regional slider then costs one render, not two)
            if not plain:
                return self.reference(c, dtype=dtype)
            key, values_key = f"{c.label()}/{dtype}", tuple(sorted(plain.items()))
            hit = self._under.get(key)
            if hit is None or hit[0] != values_key:
                hit = self._under[key] = (values_key, G.synthesize(self.latent(plain), **kw))
            return hit[1]

        return render_sliders(G, dirs, self.w_base, values, base=under, **kw)

    def reference(self, cost: str | Cost | None = "full", *, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The unedited render at ``cost`` (cached): colour matching is fitted on it, so that
        matching removes the reconstruction's colour cast without undoing deliberate colour edits.
        Rendered in the edit's own ``dtype``, so a delta paste adds the edit, not the precision's error."""
        c = self.editor.cost(cost)
        key = f"{c.label()}/{dtype}"
        if key not in self._references:
            self._references[key] = self.render(c, sliders={}, dtype=dtype)
        return self._references[key]

    def composite(self, image: torch.Tensor, *, color_match: bool = True, feather: float | None = None,
                  reference: torch.Tensor | None = None, blend: str | None = None,
                  selection_feather: float | None = None, cancel=None) -> np.ndarray:
        """Paste an aligned render back into the region: RGBA (H, W, 4) uint8 of the region's size.

        ``blend`` defaults to the editor's; "delta" needs ``reference`` (the unedited render at the
        same cost). ``selection_feather`` is the fall-off inside a selection's edge (``paste_back``)."""
        kw: dict = {} if feather is None else {"feather": feather}
        if selection_feather is not None:
            kw["selection_feather"] = selection_feather
        mode = blend or self.editor.blend
        use_ref = color_match or mode == "delta"
        ref = reference[0].detach().cpu() if reference is not None and use_ref else None
        return paste_back(self.region, self.alignment, image[0].detach().cpu(), color_match=color_match,
                          reference=ref, blend=mode, cancel=cancel, **kw)

    def result(self, cost: str | Cost | None = "full", *, color_match: bool = True,
               blend: str | None = None, selection_feather: float | None = None) -> np.ndarray:
        """Render at ``cost`` (full by default) and paste back: what Apply puts on the canvas."""
        c = self.editor.cost(cost)
        mode = blend or self.editor.blend
        ref = self.reference(c) if color_match or mode == "delta" else None
        return self.composite(self.render(c), color_match=color_match, reference=ref, blend=mode,
                              selection_feather=selection_feather)


def _finite(value: object) -> float | None:
    """``value`` as a finite float when it is a number (numpy and torch scalars included), else None."""
    if isinstance(value, bool | str | bytes):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]  # whatever float() takes
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
