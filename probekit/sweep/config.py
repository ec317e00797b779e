"""The sweep configuration: one YAML file names checkpoints (or training runs), the analyses and their grids.

::

    name: smoke                  # the sweep's name (results default to out/<name>)
    results: out/smoke           # the results store (``probekit run --results DIR`` overrides it)
    device: auto                 # auto | cpu | cuda
    checkpoints:                 # label -> checkpoint folder (relative to the current directory)
      reasoner: models/igsm-med-op4-ip12-gpt2-8-2-reasoner-op4w-b128
    train:                       # label -> a training run; its final checkpoint joins the checkpoints
      tiny: {config: experiments/train/cpu-tiny.yaml, overrides: [schedule.steps=50], seeds: [0, 1],
             grid: {data.n_problems: [1000, null]}}
    accuracy:   {sets: [id, "20", r20, h1], n: 64, seeds: [0], samples: 0, temperature: 0.7,
                 decodings: [greedy, beam-sample]}
    probe:      {tasks: [nece, dep], layers: [ln_final], ranks: [8], seeds: [0], models: [pretrained, random-init],
                 test_sets: [id], n_train: 200, n_test: 100, steps: 200, pair_pool: problem,
                 by_rank: {8: {tasks: [nece], steps: 100}}}   # optional: a rank's own tasks and settings
    mistakes:   {sets: [ood, reask], n_eval: 256, layers: [ln_final], ...}
    depth:      {layers: all, ranks: [8], ...}
    patch:      {pair_kinds: [value, dependency, query], ops: [3], n: 40, components: [resid_post], ...}
    intervene:  {tasks: [nece], layers: [ln_final], ranks: [0], modes: [ablate], n_random: 10, sets: ["2", "3"], ...}
    figures:    [fig3, fig7a]    # for ``probekit figures`` (or {fig3: {options}})

Each analysis also takes ``checkpoints: [labels]`` to run on some checkpoints only (default: all of them).
Every list-valued key is a grid axis (a single value is a one-element list); jobs are the product of the axes
with the checkpoints (:mod:`probekit.sweep.jobs`). Every key is checked by :func:`load_sweep` before any job
starts: unknown keys, wrong types and values outside the allowed ones raise :class:`ConfigError` naming the key
and what is allowed. Evaluation sets use ``probekit eval --sets`` tokens (``default``, ``id``, ``ood``,
``reask``, ``unforced``, ``K``, ``rK``, ``hK``: held out by seed); probe test sets are ``id`` (test-split problems drawn like the train
ones), ``K`` (op = K test problems) or ``rK`` (re-asked op = K problems).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from probekit.causal.patching import COMPONENT_CHOICES, PAIR_KINDS
from probekit.causal.roles import ROLE_CHOICES
from probekit.configs import ConfigError, fill, read_yaml, suggest
from probekit.igsm.presets import resolve_preset
from probekit.probe.runs import MODELS

TASKS = ("nece", "dep", "known", "value", "can_next", "nece_next")
ANALYSES = ("accuracy", "probe", "mistakes", "depth", "patch", "intervene")
_TEST_SET = re.compile(r"^(id|r?\d+)$")


@dataclass
class TrainSpec:
    """A checkpoint to train first: ``probekit train CONFIG OVERRIDES`` (one run per seed)."""

    config: str = ""
    overrides: list[str] = field(default_factory=list)
    grid: dict = field(default_factory=dict)
    """``{section.key: [values]}``: one run per combination (e.g. ``data.n_problems: [10000, 100000, null]``,
    ``model.init_from: [null, models/x]``); the label gets one ``-<key>-<value>`` suffix per key."""
    seeds: list[int] | None = None
    """None: the config's own seeds; else one run per seed (``model.seed`` and ``data.seed`` set to it)."""

    def variants(self, label: str) -> list[tuple[str, list[str]]]:
        """``[(checkpoint label, overrides)]``: one run per combination of the ``grid`` values and ``seeds``
        (``model.seed`` and ``data.seed``); labels get ``-<key>-<value>`` and ``-s<seed>`` suffixes."""
        keys = list(self.grid)
        seeds: Sequence[int | None] = self.seeds or [None]
        out = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            for seed in seeds:
                overrides = list(self.overrides) + [f"{k}={'null' if v is None else v}" for k, v in zip(keys, values)]
                name = label + "".join(f"-{k.split('.')[-1]}-{_word(v)}" for k, v in zip(keys, values))
                if seed is not None:
                    overrides += [f"model.seed={seed}", f"data.seed={seed}"]
                    name += f"-s{seed}" if len(seeds) > 1 else ""
                out.append((name, overrides))
        return out


def _word(value) -> str:
    """A grid value as a label word (a path: its last part)."""
    text = "none" if value is None else (Path(str(value)).name if "/" in str(value) else str(value))
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "x"


@dataclass
class AccuracySection:
    """Generation accuracy (``probekit eval``): one job per checkpoint x evaluation set x seed."""

    checkpoints: list[str] | None = None
    """The checkpoint labels this analysis runs on (None: every checkpoint of the sweep)."""
    sets: list[str] = field(default_factory=lambda: ["default"])
    n: int = 4096
    seeds: list[int] = field(default_factory=lambda: [0])
    samples: int = 0
    temperature: float = 0.7
    max_new_tokens: int | None = None
    batch_size: int | None = None
    preset: str | None = None
    """Problem family: med, hard or a restriction such as med-op4-ip12 (None: the checkpoint's training family)."""
    format: Literal["pq", "qp"] | None = None
    decodings: list[str] = field(default_factory=lambda: ["greedy"])
    """Decoding modes, one job each: greedy and/or the paper's beam-sample (beam 4 with sampling; Fig. 9 takes
    the best of seeds x decodings)."""


@dataclass
class ProbeSettings:
    """Settings shared by every probe-training analysis (``probekit probe`` options)."""

    checkpoints: list[str] | None = None
    """The checkpoint labels this analysis runs on (None: every checkpoint of the sweep)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    models: list[str] = field(default_factory=lambda: list(MODELS))
    ranks: list[int] = field(default_factory=lambda: [8])
    n_train: int = 1000
    n_test: int = 400
    per_problem: int = 10
    steps: int = 1000
    lr: float = 2e-3
    batch_size: int | None = None
    """Probe batch (None: the paper's by preset, 256 for med and 128 for hard)."""
    micro_batch_size: int | None = None
    op: int | None = None
    preset: str | None = None
    """Problem family: med, hard or a restriction such as med-op4-ip12 (None: the checkpoint's training family)."""
    format: Literal["pq", "qp"] = "pq"
    amp: Literal["auto", "bf16", "fp32"] = "auto"
    """Autocast of the frozen model (``probekit probe --amp``): auto = bf16 on CUDA, fp32 on CPU."""
    batches: Literal["examples", "problems"] = "examples"
    """How rank > 0 probes draw training batches (``probekit probe --batches``): random examples, or problem by
    problem, run packed (several times faster)."""


COUNTS = ("steps", "batch_size")
"""The settings of a :class:`RankSettings` that must be >= 1."""


@dataclass
class RankSettings:
    """What one rank of a probe section does differently (``probe.by_rank``); None keeps the section's value."""

    tasks: list[str] | None = None
    """The tasks this rank probes (a subset of the section's)."""
    steps: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    amp: Literal["auto", "bf16", "fp32"] | None = None
    """Autocast of this rank's probes (bf16 on a CPU: about 1.5x the examples/s of a rank-8 V-probe)."""

    def overrides(self) -> dict:
        """The job params this rank sets (its settings that are not None)."""
        return {k: v for k in ("steps", "lr", "batch_size", "amp") if (v := getattr(self, k)) is not None}


@dataclass
class ProbeSection(ProbeSettings):
    """V-probe accuracy: one job per checkpoint x model x task x layer x rank x seed x test set (less the tasks
    ``by_rank`` leaves out)."""

    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    by_rank: dict[int, RankSettings] = field(default_factory=dict)
    """Ranks with their own tasks or training settings (``{8: {tasks: [nece], steps: 100, batch_size: 64}}``:
    rank-8 V-probes for nece alone, with a budget of their own, beside linear probes of every task); a rank not
    named runs every task with the section's settings."""
    layers: list[int | str] = field(default_factory=lambda: ["ln_final"])
    test_sets: list[str] = field(default_factory=lambda: ["id"])
    controls: bool = True
    """The Hewitt-Liang control task and selectivity in every row (``probekit probe --controls``)."""
    mdl: bool = False
    """The online-code description length of the labels (``probekit probe --mdl``)."""
    bootstrap: int = 1000
    """Bootstrap resamples over problems for the 95% intervals (0: none)."""
    pair_pool: Literal["problem", "slots"] = "problem"
    """Where dep / nece_next draw (A, B): the problem's parameters (paper App. E) or every instance slot (the
    authors' code, whose all-false baselines the paper quotes)."""
    fresh: bool = False
    """Train every probe on new problems each epoch (``n_train`` per epoch; ``probekit probe --fresh``; rank > 0):
    the paper's fresh data on the fly."""


@dataclass
class MistakesSection(ProbeSettings):
    """Mistakes against probes (Fig. 8): one job per checkpoint x model x layer x rank x seed."""

    models: list[str] = field(default_factory=lambda: ["pretrained"])
    layers: list[int | str] = field(default_factory=lambda: ["ln_final"])
    sets: list[str] = field(default_factory=lambda: ["ood", "reask"])
    n_eval: int = 4096
    max_new_tokens: int | None = None


@dataclass
class DepthSection(ProbeSettings):
    """nece accuracy by layer and distance (Fig. 10): one job per checkpoint x model x rank x seed."""

    models: list[str] = field(default_factory=lambda: ["pretrained"])
    ranks: list[int] = field(default_factory=lambda: [8])
    """V-probes, as the paper's Fig. 10 (rank 0, a linear probe, is labelled so in rows and captions)."""
    layers: str = "all"
    test_sets: list[str] = field(default_factory=lambda: ["id"])
    fresh: bool = False
    """Train every probe on new problems each epoch (``probekit probe --fresh``; rank > 0)."""


@dataclass
class PatchSection:
    """Activation patching over minimal pairs (``probekit patch --op K``): one job per checkpoint x pair kind x
    op x seed, on ``n`` pairs made from generated test-split problems."""

    checkpoints: list[str] | None = None
    """The checkpoint labels this analysis runs on (None: every checkpoint of the sweep)."""
    pair_kinds: list[str] = field(default_factory=lambda: list(PAIR_KINDS))
    ops: list[int] = field(default_factory=lambda: [3])
    """Operations of the generated test problems (one job each)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    n: int = 40
    """Pairs per job."""
    components: list[str] = field(default_factory=lambda: ["resid_post"])
    """Hook points patched: resid_post (embeddings, every block, ln_final), attn_out, mlp_out."""
    roles: list[str] = field(default_factory=lambda: list(ROLE_CHOICES))
    direction: Literal["denoise", "noise"] = "denoise"
    generate: bool = True
    """Greedy decoding under each patch (answers restored); False: the logit difference only."""
    preset: str | None = None
    """Family of the generated problems: med, hard or a restriction such as med-op4-ip12 (None: the checkpoint's
    training family)."""
    format: Literal["pq", "qp"] = "pq"
    batch_size: int | None = None
    """Patched runs per forward (execution only; None: probekit patch's default)."""


@dataclass
class InterveneSection:
    """Interventions along probe directions (``probekit intervene``): one job per checkpoint x task x layer x
    rank x mode x seed, each the probe's direction beside ``n_random`` random ones."""

    checkpoints: list[str] | None = None
    """The checkpoint labels this analysis runs on (None: every checkpoint of the sweep)."""
    tasks: list[str] = field(default_factory=lambda: ["nece"])
    layers: list[int | str] = field(default_factory=lambda: ["ln_final"])
    ranks: list[int] = field(default_factory=lambda: [0])
    modes: list[Literal["ablate", "steer"]] = field(default_factory=lambda: ["ablate"])
    strength: float = 1.0
    """steer: alpha in std units of the direction's projection."""
    ablate_value: Literal["mean", "zero"] = "mean"
    n_random: int = 10
    positions: Literal["all", "prompt"] = "all"
    n_train: int = 300
    n_test: int = 200
    steps: int = 1000
    sets: list[str] = field(default_factory=lambda: ["2", "3", "4"])
    """Evaluation sets of the behaviour measurement (``probekit eval --sets`` tokens), all in one job."""
    n: int = 50
    """Problems per evaluation set."""
    max_new_tokens: int | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    bootstrap: int = 1000
    batch_size: int | None = None
    """Generation batch (execution only; None: probekit intervene's default)."""


SECTIONS = {
    "accuracy": AccuracySection,
    "probe": ProbeSection,
    "mistakes": MistakesSection,
    "depth": DepthSection,
    "patch": PatchSection,
    "intervene": InterveneSection,
}


@dataclass
class SweepConfig:
    """A parsed, checked sweep file (see the module docstring)."""

    name: str
    path: Path | None = None
    results: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoints: dict[str, str] = field(default_factory=dict)
    train: dict[str, TrainSpec] = field(default_factory=dict)
    accuracy: AccuracySection | None = None
    probe: ProbeSection | None = None
    mistakes: MistakesSection | None = None
    depth: DepthSection | None = None
    patch: PatchSection | None = None
    intervene: InterveneSection | None = None
    figures: dict[str, dict] = field(default_factory=dict)

    @property
    def results_dir(self) -> Path:
        """The results store: ``results`` or ``out/<name>``."""
        return Path(self.results or f"out/{self.name}")

    def analyses(self) -> list[str]:
        """The analysis sections present, in run order."""
        return [a for a in ANALYSES if getattr(self, a) is not None]


TOP_KEYS = [f.name for f in fields(SweepConfig) if f.name != "path"]


def load_sweep(path: str | Path, check_paths: bool = True, require_jobs: bool = True) -> SweepConfig:
    """Read and check a sweep YAML file; ``check_paths`` also requires every checkpoint folder and training
    config to exist (and the training configs to load); ``require_jobs=False`` accepts a file that names no
    checkpoint or analysis (``probekit figures`` reads only ``name``, ``results`` and ``figures``)."""
    path = Path(path)
    return parse_sweep(
        read_yaml(path, "sweep config"), where=str(path), path=path, check_paths=check_paths, require_jobs=require_jobs
    )


def parse_sweep(
    data: dict, where: str = "sweep", path: Path | None = None, check_paths: bool = True, require_jobs: bool = True
) -> SweepConfig:
    """A :class:`SweepConfig` from a mapping (see :func:`load_sweep`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with keys {', '.join(TOP_KEYS)}")
    for key in data:
        if key not in TOP_KEYS:
            raise ConfigError(
                f"{where}: unknown key {key!r}{suggest(str(key), TOP_KEYS)}; allowed keys: {', '.join(TOP_KEYS)}"
            )
    name = data.get("name") or (path.stem if path else None)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"{where}: name must be a word of letters, digits, '_', '.', '-', got {name!r}")
    cfg = SweepConfig(name=name, path=path)
    for key in ("results", "device"):
        if key in data:
            fill(cfg, {key: data[key]}, where)
    cfg.checkpoints = _labels(data.get("checkpoints"), f"{where}: checkpoints", str)
    cfg.train = {
        label: fill(TrainSpec(), spec, f"{where}: train.{label}")
        for label, spec in _labels(data.get("train"), f"{where}: train", dict).items()
    }
    clash = set(cfg.checkpoints) & set(cfg.train)
    if clash:
        raise ConfigError(f"{where}: labels used both in checkpoints and train: {', '.join(sorted(clash))}")
    for key, cls in SECTIONS.items():
        if key in data:
            setattr(cfg, key, fill(cls(), data[key] or {}, f"{where}: {key}"))
    cfg.figures = _figures(data.get("figures"), f"{where}: figures")
    _check_values(cfg, where, require_jobs)
    if check_paths:
        _check_paths(cfg, where)
    return cfg


def _labels(value, where: str, kind: type) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where} must be a mapping label -> {'folder' if kind is str else 'settings'}, got {value!r}"
        )
    for label, item in value.items():
        if not isinstance(label, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", label):
            raise ConfigError(f"{where}: label {label!r} must be a word of letters, digits, '_', '.', '-'")
        if not isinstance(item, kind):
            raise ConfigError(
                f"{where}.{label} must be {'a folder path' if kind is str else 'a mapping'}, got {item!r}"
            )
    return dict(value)


def _figures(value, where: str) -> dict[str, dict]:
    if value is None:
        return {}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = {v: {} for v in value}
    if not isinstance(value, dict) or not all(isinstance(v, dict) or v is None for v in value.values()):
        raise ConfigError(f"{where} must be a list of figure names or a mapping name -> options")
    from probekit.figures.names import FIGURE_NAMES

    for figure in value:
        if figure not in FIGURE_NAMES:
            raise ConfigError(
                f"{where}: unknown figure {figure!r}{suggest(str(figure), FIGURE_NAMES)}; "
                f"allowed: {', '.join(FIGURE_NAMES)}"
            )
    return {k: dict(v or {}) for k, v in value.items()}


def _allowed(values, allowed, key: str) -> None:
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ConfigError(
            f"{key}: unknown value {bad[0]!r}{suggest(str(bad[0]), allowed)}; allowed: {', '.join(allowed)}"
        )


def _check_values(cfg: SweepConfig, where: str, require_jobs: bool) -> None:
    from probekit.evaluate.sets import DECODINGS, parse_sets

    if require_jobs and not cfg.checkpoints and not cfg.train:
        raise ConfigError(f"{where}: name at least one checkpoint (checkpoints: or train:)")
    if require_jobs and not cfg.analyses() and not cfg.train:
        raise ConfigError(f"{where}: nothing to run: add one of {', '.join(ANALYSES)} (or train:)")
    for label, spec in cfg.train.items():
        if not spec.config:
            raise ConfigError(f"{where}: train.{label}.config: give the training config (YAML)")
        for key, values in spec.grid.items():
            if not isinstance(key, str) or "." not in key or not isinstance(values, list) or not values:
                raise ConfigError(
                    f"{where}: train.{label}.grid: {key!r} must be 'section.key: [values]' with at least one value"
                )
    labels = list(cfg.checkpoints) + list(cfg.train)
    for key in cfg.analyses():
        _allowed(getattr(cfg, key).checkpoints or [], labels, f"{where}: {key}.checkpoints")
        preset = getattr(getattr(cfg, key), "preset", None)
        if preset is not None:
            try:
                resolve_preset(preset)
            except ValueError as err:
                raise ConfigError(f"{where}: {key}.preset: {err}") from None
    acc = cfg.accuracy
    if acc is not None:
        for token in acc.sets:
            try:
                parse_sets(token, acc.preset or "med")
            except ValueError as err:
                raise ConfigError(f"{where}: accuracy.sets: {err}") from None
        _positive(where, "accuracy", n=acc.n)
        _allowed(acc.decodings, DECODINGS, f"{where}: accuracy.decodings")
        if acc.samples < 0:
            raise ConfigError(f"{where}: accuracy.samples must be >= 0 (0: greedy only), got {acc.samples}")
    if cfg.patch is not None:
        _check_patch(cfg.patch, where)
    if cfg.intervene is not None:
        _check_intervene(cfg.intervene, where)
    for key in ("probe", "mistakes", "depth"):
        section = getattr(cfg, key)
        if section is None:
            continue
        _allowed(section.models, MODELS, f"{where}: {key}.models")
        if isinstance(section, ProbeSection):
            _allowed(section.tasks, TASKS, f"{where}: probe.tasks")
            ranks = [str(r) for r in section.ranks]
            _allowed([str(r) for r in section.by_rank], ranks, f"{where}: probe.by_rank (keys: probe.ranks)")
            for rank, own in section.by_rank.items():
                _allowed(own.tasks or [], section.tasks, f"{where}: probe.by_rank.{rank}.tasks (tasks of probe.tasks)")
                _positive(where, f"probe.by_rank.{rank}", **{k: v for k, v in own.overrides().items() if k in COUNTS})
        for test_set in getattr(section, "test_sets", []):
            if not _TEST_SET.match(test_set):
                raise ConfigError(f"{where}: {key}.test_sets: {test_set!r} is not id, K (op = K) or rK (reask op = K)")
        if any(r < 0 for r in section.ranks):
            raise ConfigError(f"{where}: {key}.ranks must be >= 0")
        if getattr(section, "fresh", False) and 0 in section.ranks:
            raise ConfigError(f"{where}: {key}.fresh needs ranks > 0 (a rank-0 probe trains on frozen features)")
        _positive(
            where,
            key,
            n_train=section.n_train,
            n_test=section.n_test,
            steps=section.steps,
            batch_size=section.batch_size or 1,  # None: by preset
            per_problem=section.per_problem,
        )
        if isinstance(section, MistakesSection):
            _positive(where, key, n_eval=section.n_eval)
            for token in section.sets:
                try:
                    parse_sets(token, section.preset or "med")
                except ValueError as err:
                    raise ConfigError(f"{where}: mistakes.sets: {err}") from None


def _check_patch(section: PatchSection, where: str) -> None:
    _allowed(section.pair_kinds, PAIR_KINDS, f"{where}: patch.pair_kinds")
    _allowed(section.components, COMPONENT_CHOICES, f"{where}: patch.components")
    _allowed(section.roles, ROLE_CHOICES, f"{where}: patch.roles")
    for key in ("pair_kinds", "ops", "seeds", "components", "roles"):
        if not getattr(section, key):
            raise ConfigError(f"{where}: patch.{key} must name at least one value")
    if any(not 1 <= op <= 52 for op in section.ops):
        raise ConfigError(f"{where}: patch.ops must be between 1 and 52, got {section.ops}")
    _positive(where, "patch", n=section.n, **({"batch_size": section.batch_size} if section.batch_size else {}))


def _check_intervene(section: InterveneSection, where: str) -> None:
    from probekit.evaluate.sets import parse_sets

    _allowed(section.tasks, [t for t in TASKS if t != "value"], f"{where}: intervene.tasks (binary tasks)")
    _allowed(section.modes, ["ablate", "steer"], f"{where}: intervene.modes")
    for key in ("tasks", "layers", "ranks", "modes", "sets", "seeds"):
        if not getattr(section, key):
            raise ConfigError(f"{where}: intervene.{key} must name at least one value")
    if any(r < 0 for r in section.ranks):
        raise ConfigError(f"{where}: intervene.ranks must be >= 0")
    for token in section.sets:
        try:
            parse_sets(token, "med")
        except ValueError as err:
            raise ConfigError(f"{where}: intervene.sets: {err}") from None
    values = {"n_random": section.n_random, "n_train": section.n_train, "n_test": section.n_test, "n": section.n}
    _positive(where, "intervene", steps=section.steps, **values)


def _positive(where: str, section: str, **values) -> None:
    for key, value in values.items():
        if value < 1:
            raise ConfigError(f"{where}: {section}.{key} must be >= 1, got {value}")


def _check_paths(cfg: SweepConfig, where: str) -> None:
    from probekit.train.config import load_config

    for label, folder in cfg.checkpoints.items():
        if not (Path(folder) / "config.json").exists():
            raise ConfigError(f"{where}: checkpoints.{label}: {folder!r} is not a checkpoint folder (no config.json)")
    for label, spec in cfg.train.items():
        for name, overrides in spec.variants(label):
            try:
                load_config(spec.config, overrides)
            except ConfigError as err:
                raise ConfigError(f"{where}: train.{name}: {err}") from None
