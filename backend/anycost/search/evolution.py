"""Evolutionary search for the most faithful sub-generator within a latency budget.

Per budget (smallest first): a population seeded with every uniform (resolution, ratio)
configuration that fits and the best of the previous budget, filled with random ones; each
generation keeps the best ``parents`` and breeds the rest by mutation (a layer steps to a
neighbouring or random trained width, the resolution to a neighbouring one) and crossover
(per layer from either parent). A child over budget is
narrowed step by step until it fits; only configurations whose *predicted* time fits are ever
rendered. Fitness is consistency with the full generator (``consistency.py``); fitness results
are shared between budgets.

Because every uniform configuration that fits starts in the population and the best survive,
the result is never worse on the search latents than the best uniform ratio. The last step
re-scores the best few (and that uniform baseline) on a separate, larger set of latents, takes
the winner there (the baseline stays unless beaten by more than ``min_gain``, the noise of
those latents), and times it with whole renders; one that misses its budget by the rule of
``budget.py`` gives way to the next. When all miss, the winner is recorded with ``fits: false``
(and its measured time): the service skips such entries on this machine.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..models.flops import count_flops, count_published_macs
from ..models.generator import Generator
from .budget import fits_budget
from .consistency import Consistency, ConsistencyEvaluator, consistency_latents
from .latency import LatencyTable, measure_configs
from .settings import EvolutionSettings, SearchSettings
from .space import SearchSpace, SubConfig
from .table import SearchTable, TableEntry, budget_label, scoring_settings

Progress = Callable[[str], None] | None


@dataclass
class Candidate:
    config: SubConfig
    predicted_ms: float
    consistency: Consistency

    def key(self) -> tuple[float, float]:
        return (-self.consistency.score, self.predicted_ms)


def evolve(space: SearchSpace, predict: Callable[[SubConfig], float], evaluate: Callable[[SubConfig], Consistency],
           budget_ms: float, settings: EvolutionSettings | None = None, *, seeds: Sequence[SubConfig] = (),
           deadline: float | None = None, progress: Progress = None) -> list[Candidate]:
    """Every configuration evaluated for this budget (all within it by prediction), best first.

    ``seeds`` join the initial population when they fit (e.g. the best of smaller budgets)."""
    s = settings or EvolutionSettings()
    rng = random.Random(f"{s.seed}/{budget_ms!r}")
    predicted: dict[SubConfig, float] = {}

    def ms(c: SubConfig) -> float:
        if c not in predicted:
            predicted[c] = predict(c)
        return predicted[c]

    def fit(c: SubConfig | None) -> SubConfig | None:
        steps = 0
        while c is not None and ms(c) > budget_ms and steps < 200:
            c = space.shrink(c, rng)
            steps += 1
        return c if c is not None and ms(c) <= budget_ms else None

    history: dict[SubConfig, Candidate] = {}

    def score(configs: Sequence[SubConfig]) -> list[Candidate]:
        out = []
        for c in configs:
            if c not in history:
                if deadline is not None and time.monotonic() > deadline and history:
                    break
                history[c] = Candidate(c, ms(c), evaluate(c))
            out.append(history[c])
        return out

    population: dict[SubConfig, None] = {c: None for c in [*space.uniform_configs(), *seeds] if ms(c) <= budget_ms}
    tries = 0
    while len(population) < s.population and tries < 20 * s.population:
        tries += 1
        c = fit(space.random(rng))
        if c is not None:
            population.setdefault(c, None)
    if not population:
        return []
    current = score(list(population))
    for g in range(s.generations):
        if deadline is not None and time.monotonic() > deadline:
            break
        parents = sorted(current, key=Candidate.key)[: s.parents]
        n_children = max(1, s.population - len(parents))
        n_mut = round(n_children * s.mutation_share) if len(parents) > 1 else n_children
        children: dict[SubConfig, None] = {}
        tries = 0
        while len(children) < n_children and tries < 30 * n_children:
            tries += 1
            if len(children) < n_mut:
                child = space.mutate(rng.choice(parents).config, rng, s.layer_prob, s.res_prob)
            else:
                a, b = rng.sample(parents, 2)
                child = space.crossover(a.config, b.config, rng)
            child = fit(child)
            if child is not None and child not in history:
                children.setdefault(child, None)
        if not children:
            break  # the space within this budget is exhausted
        current = parents + score(list(children))
        if progress:
            best = min(current, key=Candidate.key)
            progress(f"  {budget_label(budget_ms)} generation {g + 1}/{s.generations}: best {best.config.label()} "
                     f"{best.consistency.psnr:.2f} dB, {best.predicted_ms:.1f} ms predicted "
                     f"({len(history)} evaluated)")
    return sorted(history.values(), key=Candidate.key)


@dataclass
class SearchResult:
    table: SearchTable
    history: dict[float, list[Candidate]]  # per budget, everything the evolution evaluated
    seconds: float
    evaluations: int


def search(G: Generator, budgets_ms: Sequence[float], space: SearchSpace, latency: LatencyTable, *,
           settings: SearchSettings | None = None, directions=None, lpips_model=None,
           model_info: dict | None = None, measure: bool = True, progress: Progress = None) -> SearchResult:
    """Search every budget and return the table (entries timed with whole renders when ``measure``)."""
    settings = settings or SearchSettings()
    t0 = time.monotonic()
    deadline = None if settings.time_limit is None else t0 + settings.time_limit
    seed = settings.evolution.seed
    lat = consistency_latents(G, settings.latents, seed=seed, truncation=settings.truncation,
                              directions=directions)
    evaluate = ConsistencyEvaluator(G, lat, lpips_model=lpips_model)
    val_lat = consistency_latents(G, settings.validation_latents, seed=seed + 100_000,
                                  truncation=settings.truncation, directions=directions)
    validate = ConsistencyEvaluator(G, val_lat, lpips_model=lpips_model)

    def predict(c: SubConfig) -> float:
        return latency.predict_config(G, c)

    entries: dict[str, TableEntry] = {}
    history: dict[float, list[Candidate]] = {}
    search_info = {**settings.to_dict(), "latents_edited": bool(directions is not None and len(directions)),
                   "lpips": lpips_model is not None}
    dist_metric = "lpips" if lpips_model is not None else "mse"
    scoring = scoring_settings(dist_metric, search_info)
    best_so_far: list[SubConfig] = []  # the best of smaller budgets fit larger ones: the frontier only rises
    for budget in sorted(budgets_ms):
        if progress:
            progress(f"searching within {budget:g} ms")
        ranked = evolve(space, predict, evaluate, budget, settings.evolution, seeds=best_so_far, deadline=deadline,
                        progress=progress)
        best_so_far = [c.config for c in ranked[: settings.evolution.parents]]
        history[budget] = ranked
        uniform = [c for c in ranked if c.config.ratio is not None]
        baseline = uniform[0] if uniform else None
        finalists = ranked[: settings.finalists] + ([baseline] if baseline and baseline not in
                                                     ranked[: settings.finalists] else [])
        if not finalists:
            if progress:
                progress(f"  nothing fits {budget:g} ms on this machine (the cheapest configuration is predicted "
                         f"at {min(predict(c) for c in space.uniform_configs()):.1f} ms)")
            continue
        # The uniform baseline competes with a head start of ``min_gain``: a configuration that beats it
        # by less on the validation latents is within their noise, and the proven ratio is kept.
        def final_key(t: tuple[Consistency, Candidate], base: Candidate | None = baseline) -> tuple[float, float]:
            bonus = settings.min_gain if base is not None and t[1] is base else 0.0
            return (-(t[0].score + bonus), t[1].predicted_ms)

        scored = sorted(((validate(c.config), c) for c in finalists), key=final_key)
        chosen = None
        if not measure:
            chosen = (*scored[0], None, None)
        else:
            timed = []
            for cons, cand in scored:
                (mn, med), = measure_configs(G, [cand.config], passes=settings.measure_passes, impl=latency.impl)
                timed.append((cons, cand, med, mn))
                if fits_budget(med, budget, settings.tolerance):
                    chosen = timed[-1]
                    break
                if progress:
                    progress(f"  {cand.config.label()} measured {med:.1f} ms (median), over {budget:g} ms: "
                             "next finalist")
            if chosen is None:
                # None fits when timed now (the machine is busier than when the layers were timed, or the
                # predictor is off): the winner is recorded, flagged, and never used on this machine.
                chosen = timed[0]
                if progress:
                    progress(f"  no finalist fits {budget:g} ms when timed: the entry is flagged 'fits: false'")
        cons, cand, med, mn = chosen
        base = None
        if baseline is not None:
            bc = validate(baseline.config)
            base = {"label": baseline.config.label(), "res": baseline.config.res, "ratio": baseline.config.ratio,
                    "predicted_ms": baseline.predicted_ms, "psnr": bc.psnr, "lpips": bc.lpips, "score": bc.score}
        flops = count_flops(G, cand.config.res, list(cand.config.channels))
        entries[budget_label(budget)] = TableEntry(
            res=cand.config.res, channels=list(cand.config.channels), budget_ms=float(budget),
            ratio=cand.config.ratio, predicted_ms=cand.predicted_ms, measured_ms=med, measured_min_ms=mn,
            psnr=cons.psnr, lpips=cons.lpips, dist=cons.dist, score=cons.score, flops=flops,
            macs=count_published_macs(G, cand.config.res, list(cand.config.channels)), baseline=base,
            fits=None if med is None else fits_budget(med, budget, settings.tolerance), scoring=scoring)
        if progress:
            e = entries[budget_label(budget)]
            gain = "" if base is None else f", {cons.score - base['score']:+.2f} over {base['label']}"
            timing = "" if med is None else f", measured {med:.1f} ms"
            progress(f"  → {e.label()} {cons.psnr:.2f} dB ({cand.predicted_ms:.1f} ms predicted{timing}{gain})")
    from .cache import weights_id

    info = model_info or {}
    table = SearchTable(
        entries,
        model={"name": info.get("name"), "resolution": G.resolution, "full_channels": G.full_channels,
               "weights": weights_id(G), "architecture": latency.architecture, "space": space.kind,
               "resolutions": space.resolutions},
        machine=latency.machine, machine_id=latency.machine_id,
        latency={"overhead_ms": latency.overhead_ms, "scale": latency.scale, "check": latency.check,
                 "impl": latency.impl, "created": latency.created},
        search={**search_info, "evaluations": evaluate.evaluations, "seconds": round(time.monotonic() - t0, 2)},
        dist_metric=dist_metric,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return SearchResult(table, history, time.monotonic() - t0, evaluate.evaluations)

