"""The probe experiments a checkpoint runs (``probekit probe``, the sweep's probe / mistakes / depth jobs): each
takes a typed spec and returns its tables, writing its files when the spec names an ``out`` folder.

- :func:`run_probe` (:class:`ProbeSpec`): V-probes per model x task x layer x probe seed on fresh probe data
  (train-split problems to fit, test-split problems to score), with the control task, bootstrap intervals and
  MDL of :func:`~probekit.probe.layers.probe_layers`; ``out``: ``results.jsonl``, ``results.csv``,
  ``data.json`` and every fitted probe under ``probes/<model>-<task>-<layer>/`` (further seeds under
  ``probes/seed<S>/``);
- :func:`run_mistakes` (:class:`MistakesSpec`): the mistake analysis of :mod:`probekit.probe.mistakes`;
- :func:`run_depth` (:class:`DepthSpec`): nece by layer and distance, :mod:`probekit.probe.depth`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from probekit.configs import check_at_least
from probekit.probe.collect import save_table
from probekit.probe.data import PER_PROBLEM, POOLS, parse_tasks
from probekit.probe.mistakes import (
    MISTAKE_TASKS,
    MistakeAnalysis,
    find_probe,
    load_records,
    mistake_analysis,
    mistake_probe_data,
)
from probekit.probe.readout import READOUT
from probekit.probe.runs import (
    HeldOutRun,
    ProbeRun,
    data_progress,
    load_for_probing,
    probed_models,
    save_probe,
)
from probekit.records import table_records, write_atomic

if TYPE_CHECKING:
    import pandas as pd


def _too_long_note(dropped: dict[str, int], context: int) -> None:
    """Say on stderr how many examples per task were left out as longer than the model's context."""
    if any(dropped.values()):
        print(
            f"probekit probe: left out {sum(dropped.values())} examples longer than the context ({context}): "
            + ", ".join(f"{k}={v}" for k, v in dropped.items() if v),
            file=sys.stderr,
        )


def _data_summary(spec, loaded, train, test, tasks) -> dict:
    """The data summary of held-out probe data (``data.json``), after the note of the examples of ``tasks``
    left out as longer than the context."""
    _too_long_note({k: train.n_too_long.get(k, 0) + test.n_too_long.get(k, 0) for k in tasks}, loaded.context)
    return {
        "train": train.summary(),
        "test": test.summary(),
        "context": loaded.context,
        "preset": loaded.preset,
        "format": spec.format,
    }


# ---------------------------------------------------------------------------- probe
@dataclass
class ProbeSpec(HeldOutRun):
    """``probekit probe CKPT``: V-probes of ``tasks`` at ``layers``."""

    tasks: tuple[str, ...] = ("nece",)
    """Probe tasks (a comma list or ``"all"`` is accepted and normalised)."""
    layers: str | int | list = READOUT
    """``"all"``, a comma list of block indices (negative from the end) or hook names, or a list of them
    (default ``ln_final.hook_out``, after the final norm; ``-1`` / ``last_block`` is the last block before it)."""
    seeds: int = 1
    """Repeat every probe with probe seeds ``seed`` .. ``seed + seeds - 1`` (one row each)."""
    controls: bool = True
    """The control task of Hewitt and Liang (2019) and selectivity."""
    mdl: bool = False
    """The online code length of the labels (Voita and Titov 2020)."""
    bootstrap: int = 1000
    """Bootstrap resamples over test problems for the 95% intervals (0: none)."""
    pair_pool: str = "problem"
    """Where A and B are drawn from (:data:`~probekit.probe.data.POOLS`): ``problem`` (the problem's parameters,
    the paper's App. E) or ``slots`` (every instance slot and abstract parameter, as the authors' code: the
    setting of the paper's quoted all-false baselines, 83% dep / 92% nece_next)."""

    def __post_init__(self):
        super().__post_init__()
        self.tasks = parse_tasks(self.tasks)

    def check(self) -> None:
        super().check()
        if not self.tasks:
            raise ValueError("no task given")
        if self.pair_pool not in POOLS:
            raise ValueError(f"pair_pool must be one of {', '.join(POOLS)}, not {self.pair_pool!r}")
        check_at_least(self, 1, "seeds")
        check_at_least(self, 0, "bootstrap")


@dataclass
class ProbeResult:
    """The result table of :func:`run_probe` (one row per model x task x layer x seed) and its data summary."""

    table: pd.DataFrame
    """DataFrame: the columns of :func:`~probekit.probe.layers.probe_layers` (``hook`` names the read-out) plus
    seed, n_train, n_too_long, steps, batch_size, amp, seconds, checkpoint, checks_skipped."""
    data: dict
    """Per-task data summary (``data.json``)."""

    def records(self) -> list[dict]:
        """The rows as JSON-ready records."""
        return table_records(self.table)


def run_probe(spec: ProbeSpec) -> ProbeResult:
    """Fit and score the probes of ``spec`` (see the module docstring)."""
    import pandas as pd

    from probekit.probe.data import train_test_data
    from probekit.probe.layers import probe_layers

    spec.check()
    loaded = load_for_probing(spec)
    with data_progress(spec, spec.n_train + spec.n_test, "probe data") as progress:
        train, test = train_test_data(
            *spec.data_args(loaded.preset),
            spec.tasks,
            tokenizer=loaded.tokenizer,
            per_problem=spec.per_problem,
            max_len=loaded.context,
            progress=progress,
            pool=spec.pair_pool,
            fresh=spec.fresh,
        )
    summary = {**_data_summary(spec, loaded, train, test, spec.tasks), "pair_pool": spec.pair_pool, "fresh": spec.fresh}

    frames = []
    kwargs = spec.probe_kwargs(loaded.device, loaded.preset)
    for label, m in probed_models(spec, loaded.model):
        for task in spec.tasks:
            if not len(train.task(task)) or not len(test.task(task)):
                raise ValueError(f"no {task!r} examples (all longer than the context?)")
            for seed in range(spec.seed, spec.seed + spec.seeds):
                start = time.perf_counter()
                frame, probes = probe_layers(
                    m,
                    train,
                    test,
                    task,
                    layers=spec.layers,
                    rank=spec.rank,
                    model_label=label,
                    return_probes=True,
                    controls=spec.controls,
                    bootstrap=spec.bootstrap,
                    mdl=spec.mdl,
                    progress=spec.bar_label(f"{label} {task}"),
                    **{**kwargs, "seed": seed},
                )
                seconds = time.perf_counter() - start
                frame.insert(frame.columns.get_loc("rank") + 1, "seed", seed)
                frame["n_train"] = len(train.task(task))
                frame["n_too_long"] = train.n_too_long.get(task, 0) + test.n_too_long.get(task, 0)
                frame["steps"] = spec.steps
                frame["batch_size"] = kwargs["batch_size"]
                frame["amp"] = spec.amp
                frame["batches"] = spec.batches
                frame["seconds"] = round(seconds / len(frame), 3)
                frame["checkpoint"] = str(spec.checkpoint)
                frame["checks_skipped"] = spec.skip_checks
                frame["pair_pool"] = spec.pair_pool
                frame["fresh"] = spec.fresh
                frame["epochs"] = [p.epochs_ for p in probes.values()]
                frames.append(frame)
                if spec.out:
                    folder = Path(spec.out) / "probes" / ("" if seed == spec.seed else f"seed{seed}")
                    for hook, probe in probes.items():
                        save_probe(spec, probe, folder, label, task, hook)
    result = ProbeResult(pd.concat(frames, ignore_index=True), summary)
    if spec.out:
        out = Path(spec.out)
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "results.jsonl", "".join(json.dumps(r) + "\n" for r in result.records()))
        write_atomic(out / "results.csv", result.table.to_csv(index=False))
        write_atomic(out / "data.json", json.dumps(summary, indent=2) + "\n")
    return result


SPREAD_COLUMNS = ("accuracy", "control_accuracy", "selectivity", "compression", "control_compression")


def seed_spread(table):
    """Per (model, task, layer, rank): the number of seeds and ``mean ± std`` (sample std, ddof 1) over the
    seeds of each of :data:`SPREAD_COLUMNS` present with a value (a DataFrame of strings, for printing)."""
    import pandas as pd

    keys = [k for k in ("model", "task", "layer", "rank") if k in table]
    cols = [c for c in SPREAD_COLUMNS if c in table and table[c].notna().any()]
    rows = []
    for values, group in table.groupby(keys, sort=False):
        row = dict(zip(keys, values), seeds=len(group))
        for col in cols:
            x = group[col].astype(float)
            row[col] = f"{x.mean():.4f} ± {x.std(ddof=1) if len(x) > 1 else 0.0:.4f}"
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- mistakes
MISTAKE_TABLES = ("unnecessary", "first_error", "unnecessary_examples", "first_error_examples")


@dataclass
class MistakesSpec(ProbeRun):
    """``probekit probe CKPT --analysis mistakes``: the mistake analysis (:mod:`probekit.probe.mistakes`) of a
    checkpoint's own solutions."""

    layers: str | int | None = None
    """The one layer probed (None: ``ln_final.hook_out``, after the final norm; with ``probes``, the deepest
    saved probe)."""
    records: str | None = None
    """The model's solutions: a ``probekit eval`` records.jsonl or its folder (None: generate them here)."""
    sets: str = "ood,reask"
    """Without ``records``: the evaluation sets to generate on (``probekit eval --sets`` syntax)."""
    n_eval: int = 4096
    """Without ``records``: problems per set."""
    max_new_tokens: int | None = None
    """Without ``records``: a fixed generation budget (None: ``probekit eval``'s)."""
    probes: str | None = None
    """A folder with saved nece, can_next and nece_next probes (None: train them here)."""
    nece_per_problem: int | None = PER_PROBLEM
    correct_per_problem: int | None = PER_PROBLEM
    background_per_problem: int = PER_PROBLEM
    bootstrap: int = 1000
    """Bootstrap resamples over solutions for the 95% intervals (0: Wilson intervals over examples)."""

    def check(self) -> None:
        super().check()
        check_at_least(self, 0, "background_per_problem", "bootstrap")
        check_at_least(self, 1, "n_eval")
        if self.probes and "random-init" in self.models:
            raise ValueError("a random-init model needs probes trained here: drop the saved probes")


@dataclass
class MistakesResult:
    """What :func:`run_mistakes` found: one :class:`MistakeAnalysis` per probed model, the layer probed and the
    bookkeeping written to ``counts.json``."""

    analyses: dict[str, MistakeAnalysis]
    """Model label (pretrained | random-init) -> its analysis."""
    layer: str
    info: dict

    def table(self, name: str):
        """One of :data:`MISTAKE_TABLES` over every probed model (column ``model`` first)."""
        import pandas as pd

        frames = [getattr(a, name).assign(model=label, hook=self.layer) for label, a in self.analyses.items()]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["model", "hook"])
        return frame[["model", *[c for c in frame.columns if c != "model"]]]

    def records(self) -> list[dict]:
        """The rows of the two summary tables, each with ``analysis`` (``unnecessary`` | ``first_error``)."""
        return [r for name in ("unnecessary", "first_error") for r in table_records(self.table(name), analysis=name)]

    def save(self, out: Path) -> None:
        """Write the tables (:func:`~probekit.probe.collect.save_table`) and ``counts.json`` under ``out``."""
        from probekit.records import write_atomic

        for name in MISTAKE_TABLES:
            save_table(self.table(name), out / name)
        write_atomic(out / "counts.json", json.dumps(self.info, indent=2) + "\n")


def run_mistakes(spec: MistakesSpec) -> MistakesResult:
    """Run the mistake analysis on ``spec.checkpoint``: its solutions (read from ``spec.records`` or generated
    here), the probes (loaded from ``spec.probes`` or trained here at one layer), :func:`mistake_analysis` for
    each model of ``spec.models``. With ``spec.out``: the tables, ``counts.json``, the probes trained here under
    ``probes/`` and generated records under ``eval/``."""
    import warnings

    from probekit.probe import hooks
    from probekit.probe.layers import resolve_layers
    from probekit.probe.vprobe import VProbe

    spec.check()
    loaded = load_for_probing(spec)
    names = resolve_layers(spec.layers or READOUT, hooks.n_layers(loaded.model))
    if len(names) != 1:
        raise ValueError("the mistake analysis probes one layer: give one layer")
    layer = names[0]
    wanted = layer if (spec.layers is not None or not spec.probes) else None  # saved probes alone: the deepest
    out = Path(spec.out) if spec.out else None
    records = load_records(spec.records) if spec.records else _generate_records(spec, loaded, out)
    if not records:
        raise ValueError("no solution records to analyse")

    train = None
    if not spec.probes:
        with data_progress(spec, spec.n_train, "probe data") as progress:
            train = mistake_probe_data(
                loaded.preset,
                spec.format,
                spec.n_train,
                spec.seed,
                spec.op,
                tokenizer=loaded.tokenizer,
                per_problem=spec.per_problem,
                max_len=loaded.context,
                progress=progress,
            )
        for task in MISTAKE_TASKS:
            if not len(train.task(task)):
                raise ValueError(f"no {task!r} training examples (all longer than the context?)")

    analyses = {}
    for label, m in probed_models(spec, loaded.model):
        if spec.probes:
            probes = {
                task: VProbe.load(find_probe(spec.probes, task, wanted), model=m, device=loaded.device)
                for task in MISTAKE_TASKS
            }
            if len({p.layer_name_ for p in probes.values()}) > 1:
                print(
                    "probekit probe: the saved probes read different layers: "
                    + ", ".join(f"{t}={p.layer_name_}" for t, p in probes.items()),
                    file=sys.stderr,
                )
            layer = probes["nece"].layer_name_
        else:
            if train is None:  # built above whenever no saved probes are given
                raise RuntimeError("no probe training data to fit the mistake-analysis probes on")
            probes = {
                task: VProbe(
                    task,
                    rank=spec.rank,
                    layer=layer,
                    progress=spec.bar_label(f"{label} {task}"),
                    **spec.probe_kwargs(loaded.device, loaded.preset),
                ).fit(m, train)
                for task in MISTAKE_TASKS
            }
            if out is not None:
                for task, probe in probes.items():
                    save_probe(spec, probe, out / "probes", label, task, layer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # counted in counts["n_too_long"]
            analyses[label] = mistake_analysis(
                records,
                probes,
                model=m,
                tokenizer=loaded.tokenizer,
                max_len=loaded.context,
                nece_per_problem=spec.nece_per_problem,
                correct_per_problem=spec.correct_per_problem,
                background_per_problem=spec.background_per_problem,
                seed=spec.seed,
                bootstrap=spec.bootstrap,
            )
    generated = str(out / "eval" / "records.jsonl") if out is not None else None
    info = {
        "checkpoint": str(spec.checkpoint),
        "records": spec.records or generated,
        "layer": layer,
        "rank": spec.rank,
        "probes": spec.probes,
        "context": loaded.context,
        "counts": {label: a.counts for label, a in analyses.items()},
    }
    result = MistakesResult(analyses, layer, info)
    if out is not None:
        result.save(out)
    return result


def _generate_records(spec: MistakesSpec, loaded, out: Path | None) -> list[dict]:
    """The checkpoint's solutions on ``spec.sets`` (``probekit eval``; records also under ``out/eval/``)."""
    from probekit.evaluate.run import evaluate_checkpoint
    from probekit.evaluate.sets import parse_sets

    sets = parse_sets(spec.sets, loaded.preset, spec.n_eval, spec.seed, spec.format)
    report = evaluate_checkpoint(
        spec.checkpoint,
        sets,
        out=out / "eval" if out else None,
        device=loaded.device,
        batch_size=256 if loaded.device.startswith("cuda") else 32,
        max_new_tokens=spec.max_new_tokens,
        progress=spec.progress,
        keep_records=True,
        checks=False,
    )  # load_for_probing checked the model
    return [r for result in report.results for r in result.records]


# ---------------------------------------------------------------------------- depth
@dataclass
class DepthSpec(HeldOutRun):
    """``probekit probe CKPT --analysis depth``: one nece probe per layer, scored per distance to the query and on
    nece = false parameters (:mod:`probekit.probe.depth`). The default is the paper's rank-8 V-probe; ``rank=0``
    (a linear probe on frozen features, much cheaper) is labelled ``probe = "linear"`` in the rows."""

    rank: int = 8
    layers: str | int | list = "all"
    bootstrap: int = 1000
    """Bootstrap resamples over test problems for the 95% intervals (0: Wilson intervals over examples)."""

    def check(self) -> None:
        super().check()
        check_at_least(self, 0, "bootstrap")


@dataclass
class DepthResult:
    """The table of :func:`run_depth` (per model x layer x distance, with each layer's accuracy on nece = false
    parameters and the training prior) and its data summary (``data.json``)."""

    table: object
    data: dict

    def records(self, **extra) -> list[dict]:
        """The rows as JSON-ready records, ``extra`` keys first."""
        return table_records(self.table, **extra)


def run_depth(spec: DepthSpec) -> DepthResult:
    """nece accuracy by layer and distance for each model of ``spec.models``; with ``spec.out``: ``depth.csv``
    (and ``.parquet``) and ``data.json``."""
    import pandas as pd

    from probekit.probe.depth import depth_analysis, depth_data

    spec.check()
    loaded = load_for_probing(spec)
    with data_progress(spec, spec.n_train + spec.n_test, "depth data") as progress:
        train, test = depth_data(
            *spec.data_args(loaded.preset),
            loaded.tokenizer,
            spec.per_problem,
            loaded.context,
            progress,
            fresh=spec.fresh,
        )
    n_necessary = int((test.labels == 1).sum())
    summary = {
        **_data_summary(spec, loaded, train, test, ["nece"]),
        "n_necessary_test": n_necessary,
        "n_unnecessary_test": len(test) - n_necessary,
    }
    if not len(train) or not len(test):
        raise ValueError("no nece examples for the depth analysis (all longer than the context?)")
    tables = []
    for label, m in probed_models(spec, loaded.model):
        start = time.perf_counter()
        table = depth_analysis(
            m,
            train,
            test,
            layers=spec.layers,
            rank=spec.rank,
            progress=spec.bar_label(f"{label} depth"),
            bootstrap=spec.bootstrap,
            **spec.probe_kwargs(loaded.device, loaded.preset),
        )
        table.insert(0, "model", label)
        table["seconds"] = round(time.perf_counter() - start, 3)
        table["checkpoint"] = str(spec.checkpoint)
        tables.append(table)
    result = DepthResult(pd.concat(tables, ignore_index=True), summary)
    if spec.out:
        out = Path(spec.out)
        save_table(result.table, out / "depth")
        write_atomic(out / "data.json", json.dumps(summary, indent=2) + "\n")
    return result
