"""``anycost adopt``: from a StyleGAN2 someone holds to a model that edits faces in Krita and GIMP.

A pipeline of the stages the other commands run, each a call of the same function, never a copy:

1. ``import``     — read the file (network pickle, rosinality or official checkpoint) into a model file;
2. ``distill``    — train its sub-generators for consistency (``training.distill``);
3. ``encoder``    — a W+ encoder trained on the generator's own samples (``training.encoder_training``);
4. ``directions`` — unsupervised edit directions (SeFa, and PCA in the GANSpace manner when available);
5. ``search``     — the preview sub-generators for latency budgets, timed on this machine (``search.run``).

Each stage writes its result into a work folder beside the output and records what it measured in
``state.json``; a stage whose result is there (for the same source file and settings) is skipped, so an
interrupted adoption resumes where it stopped, and the distillation and encoder stages resume from
their own checkpoints mid-way.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import InputError
from ..fsutil import atomic_write
from ..settings_field import setting

STAGES = ("import", "distill", "encoder", "directions", "search")


@dataclass
class AdoptSettings:
    """Settings of ``anycost adopt``; each field's metadata holds its flag's help."""

    device: str = setting("cpu", "cpu, cuda or cuda:N")
    distill_steps: int = setting(2000, "distillation steps (0: skip)")
    distill_batch: int = setting(4, "latents per distillation step")
    encoder_steps: int = setting(2000, "encoder training steps (0: skip)")
    encoder_batch: int = setting(8, "latents per encoder training step")
    encoder_depth: int = 18
    encoder_width: int = 32
    # SeFa directions fitted (named sefa_0 …; rename them with `anycost directions set`)
    sefa: int = setting(10, "SeFa directions to fit")
    pca: int = setting(10, "PCA (GANSpace) directions to fit")  # named pca_0 …
    budgets_ms: list[float] = setting([40.0, 80.0, 160.0], "preview latency budgets to search (milliseconds)",
                                      flag="--budget-ms", metavar="MS[,MS…]")
    search_generations: int = setting(8, "generations of the evolutionary search per budget")
    search_population: int = 24
    seed: int = setting(0, "random seed")
    force: bool = setting(False, "distil even a model that is already Anycost-trained")
    name: str = ""  # the model's name in its file (default: the output's file name)

    def validate(self) -> None:
        if min(self.distill_steps, self.encoder_steps) < 0 or min(self.distill_batch, self.encoder_batch) < 1:
            raise InputError("--distill-steps/--encoder-steps must be ≥ 0 and batches ≥ 1")
        if self.sefa < 0 or self.pca < 0:
            raise InputError("--sefa and --pca must be ≥ 0")
        if not self.budgets_ms or any(not b > 0 for b in self.budgets_ms):
            raise InputError("--budget-ms needs positive numbers")


@dataclass
class StageResult:
    stage: str
    file: str
    summary: dict
    seconds: float
    skipped: bool = False


class Progress:
    """One progress display for the whole adoption: work units are distillation steps, encoder steps
    and one unit for each of the quick stages."""

    def __init__(self, total: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, disable=not enabled)

    def stage(self, name: str) -> None:
        self.bar.set_description(name)

    def to(self, done_in_stage: int, offset: int) -> None:
        self.bar.n = offset + done_in_stage
        self.bar.refresh()

    def write(self, text: str) -> None:
        self.bar.write(text)

    def close(self) -> None:
        self.bar.close()


def work_dir_for(out: Path) -> Path:
    return out.with_name(out.stem + ".adopt")


def _read_state(work: Path) -> dict:
    try:
        state = json.loads((work / "state.json").read_text())
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_state(work: Path, state: dict) -> None:
    atomic_write(work / "state.json", lambda tmp: Path(tmp).write_text(json.dumps(state, indent=2, sort_keys=True)))


def adopt(source: str | Path, out: str | Path, settings: AdoptSettings, *, progress: bool = True,
          say: Callable[[str], None] | None = None) -> list[StageResult]:
    """Run every stage not done yet; write ``out``; return what each stage measured."""
    from ..commands.common import resolve_device
    from ..io.checkpoint import file_sha256
    from ..registry import resolve_model

    settings.validate()
    settings.name = settings.name or Path(out).stem
    resolve_device(settings.device)  # a missing GPU is one clear line, before any work
    out = Path(out)
    if out.suffix != ".safetensors":
        raise InputError(f"the adopted model must be a .safetensors file, got {out}")
    src = resolve_model(source)
    work = work_dir_for(out)
    work.mkdir(parents=True, exist_ok=True)
    sha = file_sha256(src)
    state = _read_state(work)
    if state.get("source_sha256") not in (None, sha):
        raise InputError(f"{work} holds an adoption of another file (its SHA-256 differs); remove it or choose "
                         "another output")
    state.update({"source": str(src), "source_sha256": sha})
    state.setdefault("stages", {})
    units = {"import": 1, "distill": settings.distill_steps, "encoder": settings.encoder_steps,
             "directions": 1, "search": 1}
    bar = Progress(sum(units.values()), progress)
    tell = say or bar.write
    results: list[StageResult] = []
    offset = 0
    current = src
    try:
        for name in STAGES:
            bar.stage(name)
            done = state["stages"].get(name)
            target = work / f"{STAGES.index(name) + 1}-{name}.safetensors"
            key = _stage_key(name, settings)
            if done and done.get("key") == key and Path(done["file"]).is_file():
                results.append(StageResult(name, done["file"], done["summary"], done["seconds"], skipped=True))
                current = Path(done["file"])
            else:
                t0 = time.perf_counter()
                summary, produced = _STAGE_FUNCS[name](current, target, settings, work,
                                                       lambda k, n, o=offset: bar.to(k, o), tell)
                seconds = time.perf_counter() - t0
                state["stages"][name] = {"key": key, "file": str(produced), "summary": summary,
                                         "seconds": round(seconds, 1)}
                _write_state(work, state)
                results.append(StageResult(name, str(produced), summary, round(seconds, 1)))
                current = Path(produced)
            offset += units[name]
            bar.to(0, offset)
    finally:
        bar.close()
    atomic_write(out, lambda tmp: shutil.copyfile(current, tmp))
    return results


def _stage_key(name: str, s: AdoptSettings) -> dict:
    """The settings a stage's result depends on: changing one of them redoes the stage (and, through its
    input file, every later one)."""
    keys = {"import": ["name"], "distill": ["distill_steps", "distill_batch", "seed", "force"],
            "encoder": ["encoder_steps", "encoder_batch", "encoder_depth", "encoder_width", "seed"],
            "directions": ["sefa", "pca", "seed"], "search": ["budgets_ms", "search_generations",
                                                               "search_population", "seed"]}[name]
    d = asdict(s)
    return {k: d[k] for k in keys}


# ---------------------------------------------------------------------------- stages
def _import(src: Path, target: Path, s: AdoptSettings, work: Path, step, tell) -> tuple[dict, Path]:
    from ..io.checkpoint import open_model
    from ..io.modelfile import save_model

    mf = open_model(src)
    G = mf.generator()
    comps = {k: c for k, c in mf.components.items() if k not in ("generator", "encoder")}
    E = mf.encoder()
    info = {**mf.info, "name": s.name or mf.info.get("name", src.stem)}
    save_model(target, generator=G, encoder=E, components=comps, info=info)
    src_info = info.get("source") or {}
    tell(f"import: {src_info.get('format', 'model file')} {src.name}, {G.resolution} px, "
         f"discriminator {src_info.get('discriminator', 'absent')}")
    step(1, 1)
    return {"format": src_info.get("format", "anycost model"), "resolution": G.resolution,
            "discriminator": src_info.get("discriminator", "absent")}, target


def _distill(src: Path, target: Path, s: AdoptSettings, work: Path, step, tell) -> tuple[dict, Path]:
    from ..io.modelfile import read_header_info
    from .distill import DistillConfig, distill_model, is_anycost_trained

    info = read_header_info(src) or {}
    if is_anycost_trained(info) and not s.force:
        tell("distill: skipped, the model's sub-generators are already Anycost-trained (--force distils anyway)")
        return {"skipped": "already Anycost-trained"}, src
    if s.distill_steps == 0:
        tell("distill: skipped (--distill-steps 0): previews stay approximate")
        return {"skipped": "--distill-steps 0"}, src
    cfg = DistillConfig(steps=s.distill_steps, batch=s.distill_batch, device=s.device, seed=s.seed,
                        checkpoint_every=max(1, min(200, s.distill_steps // 4 or 1)))
    after = distill_model(src, target, cfg, run_dir=work / "distill-run", force=s.force, progress=False, say=tell,
                          on_step=step)
    before = (read_header_info(target) or {}).get("distilled", {}).get("psnr_before", {})
    res = sorted({int(k.rsplit("res", 1)[1]) for k in after if k.startswith("psnr/")})
    top, half = res[-1], res[-2] if len(res) > 1 else res[-1]
    keys = {f"r0.5@{top}": f"psnr/r0.5/res{top}", f"r0.25@{top}": f"psnr/r0.25/res{top}",
            f"r1@{half}": f"psnr/r1/res{half}"}
    return {**{label: f"{before[k]:.2f}→{after[k]:.2f} dB" for label, k in keys.items() if k in after},
            "drift": f"{after['drift']:.2f} dB"}, target


def _encoder(src: Path, target: Path, s: AdoptSettings, work: Path, step, tell) -> tuple[dict, Path]:
    from ..measures.psnr import psnr_from_mse
    from ..models.channels import STANDARD_RATIOS
    from ..search.space import model_space_kind
    from .encoder_training import EncoderTrainConfig, build_encoder, evaluate_encoder, train_encoder
    from .model_update import model_parts, update_model

    G, comps, info = model_parts(src)
    if "encoder" in comps and not s.encoder_steps:
        return {"skipped": "the model has an encoder"}, src
    if s.encoder_steps == 0:
        tell("encoder: skipped (--encoder-steps 0): projection will use optimisation only")
        return {"skipped": "--encoder-steps 0"}, src
    kind = model_space_kind(info)
    ratios = (1.0,) if kind == "full" else tuple(info.get("channel_ratios") or STANDARD_RATIOS)
    cfg = EncoderTrainConfig(steps=s.encoder_steps, batch=s.encoder_batch, seed=s.seed, device=s.device,
                             checkpoint=str(work / "encoder-ckpt.pt"), checkpoint_every=max(1, s.encoder_steps // 4),
                             ratios=ratios)
    E = build_encoder(G, depth=s.encoder_depth, width=s.encoder_width)
    st = train_encoder(G, E, cfg, resume=True, progress=False, log=lambda k, parts: step(k, s.encoder_steps),
                       log_every=1)
    import torch

    dev = torch.device(s.device)
    m = evaluate_encoder(G.to(dev), E.to(dev), n=16)
    update_model(src, target, encoder=E.cpu(),
                 info={"encoder_training": {"steps": st.step, "depth": s.encoder_depth, "width": s.encoder_width,
                                            "data_free": True, "metrics": {k: round(v, 6) for k, v in m.items()}}})
    summary = {"steps": st.step, "image_psnr": round(psnr_from_mse(m["image_mse"]), 2),
               "latent_mse": round(m["latent_mse"], 4)}
    summary["domain_fit_p05"] = _fit_domain(target, info, s)
    tell(f"encoder: {st.step} steps, held-out reconstruction {summary['image_psnr']:.2f} dB; its own faces "
         f"reproduce {max(summary['domain_fit_p05'], 0):.0%} or more (faces far below get a notice)")
    return summary, target


def _fit_domain(path: Path, info: dict, s: AdoptSettings) -> float:
    """What the model's own faces (its samples: its training images are not at hand) reach, recorded so
    that editing can say when a face is beyond it (``editing.domain``)."""
    from ..editing.domain import domain_from_scores, generator_samples, measure
    from ..editing.session import Editor
    from .model_update import update_model

    ed = Editor(path, device=s.device, use_lpips=False)
    scores = measure(ed, generator_samples(ed.generator, 32, seed=s.seed + 17), align=ed.is_face_model)
    data = (info.get("source") or {}).get("training_set")
    dom = domain_from_scores(scores, kind=f"the faces of {data}" if data else "its own kind of face",
                             advice="crop closer to the face, or use a model trained on faces like this one",
                             measured_on="the generator's own samples")
    update_model(path, path, info={"domain": dom.to_info()})
    return dom.fit_p05


def _directions(src: Path, target: Path, s: AdoptSettings, work: Path, step, tell) -> tuple[dict, Path]:
    from ..directions import DirectionSet, from_component, sefa_directions, to_component
    from ..directions.pca import pca_directions
    from ..directions.storage import COMPONENT
    from .model_update import model_parts, update_model

    G, comps, _ = model_parts(src)
    have = from_component(comps[COMPONENT], str(src)) if COMPONENT in comps else DirectionSet()
    new = DirectionSet()
    if s.sefa:
        new = new.merged(sefa_directions(G, s.sefa))
    if s.pca:
        new = new.merged(pca_directions(G, s.pca, seed=s.seed))
    merged = have.merged(new)
    if not len(merged):
        return {"count": 0}, src
    update_model(src, target, components={COMPONENT: to_component(merged)})
    tell(f"directions: {len(new)} fitted ({', '.join(list(new)[:4])}{' …' if len(new) > 4 else ''}); "
         "name them with `anycost directions sheet` and `anycost directions set`")
    step(1, 1)
    return {"count": len(merged), "names": list(merged)}, target


def _search(src: Path, target: Path, s: AdoptSettings, work: Path, step, tell) -> tuple[dict, Path]:
    from ..search.evolution import EvolutionSettings
    from ..search.run import SearchSettings, load_model, run_search

    m = load_model(src, s.device)
    settings = SearchSettings(evolution=EvolutionSettings(population=s.search_population,
                                                          generations=s.search_generations, seed=s.seed))
    result, _, _ = run_search(m, list(s.budgets_ms), settings=settings, use_lpips=True, cache=True)
    rows = {k: {"sub_generator": e.label(), "measured_ms": e.measured_ms, "psnr": e.psnr, "fits": e.fits}
            for k, e in result.table.entries.items()}
    tell("search: " + "; ".join(f"{k} → {v['sub_generator']} ({(v['measured_ms'] or 0):.0f} ms, "
                                f"{(v['psnr'] or 0):.1f} dB)" for k, v in rows.items())
         + f" (cached as {result.table.path})")
    step(1, 1)
    return {"budgets": rows, "table": str(result.table.path) if result.table.path else None}, src


_STAGE_FUNCS = {"import": _import, "distill": _distill, "encoder": _encoder, "directions": _directions,
                "search": _search}


def format_summary(results: list[StageResult]) -> str:
    lines = ["stage       time      result"]
    for r in results:
        mark = " (done before)" if r.skipped else ""
        text = ", ".join(f"{k} {v}" for k, v in r.summary.items() if not isinstance(v, dict | list))
        lines.append(f"{r.stage:<10} {r.seconds:7.1f} s  {text}{mark}")
    return "\n".join(lines)
