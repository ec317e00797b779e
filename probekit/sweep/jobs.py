"""Expanding a sweep into jobs: the product of its grid axes, each job with a stable ``job_id``.

A :class:`Job` is one library call on one checkpoint, the one a ``probekit`` command makes
(:mod:`probekit.sweep.runners`): ``train`` (``probekit train``), ``accuracy`` (``probekit eval`` on one
evaluation set), ``probe`` (``probekit probe``: one model, task, layer, rank, seed and test set), ``mistakes``
and ``depth`` (``probekit probe --analysis ...``). ``job_id`` is
``<kind>-<checkpoint label>-<10 hex digits>``, the digits a SHA-256 of everything that decides the job's result
(kind, checkpoint source, settings); execution settings (device, workers, micro-batch, batch size of
generation) are not part of it. The same config therefore always expands to the same ids, and changing a
setting makes new jobs instead of silently reusing old results.

``job_id`` names a checkpoint by its label and folder, not by its content: a job's identity is ``job_id``
together with the fingerprint of the files it reads (:mod:`probekit.sweep.inputs`: the checkpoint's weights,
config, tokenizer and ``probekit.json``; shards), taken when it is about to run. Rows of a ``job_id`` computed
from other inputs (a checkpoint retrained or overwritten at the same path) do not count as finished: the job runs
again and its old rows are set aside and reported (:mod:`probekit.sweep.store`).

Jobs on a checkpoint that a ``train`` job produces depend on that job (``depends_on``) and run after it; so does
a training run that fine-tunes another run of the sweep (``model.init_from=train:<label>``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

from probekit.configs import ConfigError
from probekit.sweep.config import (
    InterveneSection,
    MistakesSection,
    PatchSection,
    ProbeSettings,
    RankSettings,
    SweepConfig,
)

INIT_FROM, TRAINED = "model.init_from", "train:"
ADDED_KEYS = (("model", "grow_after"), ("run", "attention"), ("data", "unpack"))
"""Training-config keys added after results stores already held train jobs: left out of a job's ``resolved``
config (and so of its id) while at their defaults, so that a new key does not re-run finished training jobs."""


@dataclass
class Job:
    """One unit of a sweep (see the module docstring)."""

    kind: str
    checkpoint: str
    """The checkpoint's label in the sweep."""
    source: dict
    """``{"path": folder}`` or ``{"train": train job id}`` (a train job: ``{}``, or the run it fine-tunes)."""
    params: dict
    """The settings that decide the result (part of ``job_id``; the content of the files the job reads is
    fingerprinted when it runs, :mod:`probekit.sweep.inputs`)."""
    options: dict = field(default_factory=dict)
    """Execution settings (not part of ``job_id``)."""

    @property
    def job_id(self) -> str:
        payload = json.dumps(
            {"kind": self.kind, "checkpoint": self.checkpoint, "source": self.source, "params": self.params},
            sort_keys=True,
        )
        return f"{self.kind}-{self.checkpoint}-{hashlib.sha256(payload.encode()).hexdigest()[:10]}"

    @property
    def depends_on(self) -> str | None:
        return self.source.get("train")

    def train_overrides(self, checkpoint: str | Path | None, device: str | None = None) -> list[str]:
        """A train job's config overrides: ``model.init_from=train:<id>`` becomes ``checkpoint`` (the final
        checkpoint of the run it fine-tunes), and ``run.device`` is set when ``device`` is given."""
        overrides = [
            f"{INIT_FROM}={checkpoint}" if o.startswith(f"{INIT_FROM}={TRAINED}") else o
            for o in self.params["overrides"]
        ]
        return overrides + ([f"run.device={device}"] if device else [])

    def argv(self, checkpoint: str | Path | None, out: str | Path, device: str | None = None) -> list[str]:
        """The ``probekit`` command line equivalent to the job, reading ``checkpoint`` (None: a train job from
        scratch) and writing to ``out`` (shown by ``probekit run --dry-run`` and in the job's log; the sweep runs
        the job through the library, :mod:`probekit.sweep.runners`)."""
        p, o = self.params, self.options
        if self.kind == "train":  # ``checkpoint``: the one it fine-tunes, when it depends on another run
            return [
                "train",
                p["config"],
                *self.train_overrides(checkpoint, device),
                "--out",
                str(out),
                "--resume",
                "--quiet",
            ]
        if self.kind == "patch":
            args = [
                "patch",
                str(checkpoint),
                "--op",
                p["op"],
                "--kind",
                p["pair_kind"],
                "--n",
                p["n"],
                "--seed",
                p["seed"],
                "--points",
                ",".join(p["components"]),
                "--roles",
                ",".join(p["roles"]),
                "--direction",
                p["direction"],
                "--format",
                p["format"],
                "--out",
                str(Path(out) / "rows.jsonl"),
                "--quiet",
            ]
            args += [] if p["generate"] else ["--no-generate"]
            args += _flags(preset=p["preset"], batch_size=o.get("batch_size"))
        elif self.kind == "intervene":
            args = [
                "intervene",
                str(checkpoint),
                "--task",
                p["task"],
                "--layer",
                p["layer"],
                "--rank",
                p["rank"],
                "--mode",
                p["mode"],
                *(["--strength", p["strength"]] if p["mode"] == "steer" else ["--ablate-value", p["ablate_value"]]),
                "--n-random",
                p["n_random"],
                "--positions",
                p["positions"],
                "--n-train",
                p["n_train"],
                "--n-test",
                p["n_test"],
                "--steps",
                p["steps"],
                "--sets",
                p["sets"],
                "--n",
                p["n_eval"],
                "--bootstrap",
                p["bootstrap"],
                "--seed",
                p["seed"],
                "--out",
                str(Path(out) / "rows.jsonl"),
                "--quiet",
            ]
            args += _flags(max_new_tokens=p["max_new_tokens"], batch_size=o.get("batch_size"))
        elif self.kind == "accuracy":
            args = [
                "eval",
                str(checkpoint),
                "--sets",
                p["set"],
                "--n",
                p["n"],
                "--seed",
                p["seed"],
                "--workers",
                1,
                "--out",
                str(Path(out) / "eval"),
                "--quiet",
            ]
            if p["samples"]:
                args += ["--samples", p["samples"], "--temperature", p["temperature"]]
            args += _flags(
                preset=p["preset"],
                format=p["format"],
                max_new_tokens=p["max_new_tokens"],
                batch_size=o.get("batch_size"),
                decoding=p.get("decoding"),
            )
        else:
            args = [
                "probe",
                str(checkpoint),
                "--models",
                p["model"],
                "--rank",
                p["rank"],
                "--seed",
                p["seed"],
                "--n-train",
                p["n_train"],
                "--n-test",
                p["n_test"],
                "--per-problem",
                p["per_problem"],
                "--steps",
                p["steps"],
                "--lr",
                p["lr"],
                "--format",
                p["format"],
                "--out",
                str(out),
                "--quiet",
            ]
            args += _flags(
                op=p["op"],
                preset=p["preset"],
                batch_size=p["batch_size"],
                micro_batch_size=o.get("micro_batch_size"),
                amp=p.get("amp"),
                batches=p.get("batches"),
            )
            if self.kind == "probe":
                args += [
                    "--task",
                    p["task"],
                    "--layers",
                    p["layer"],
                    *_test_set_flags(p["test_set"]),
                    "--controls" if p["controls"] else "--no-controls",
                    "--mdl" if p["mdl"] else "--no-mdl",
                    "--bootstrap",
                    p["bootstrap"],
                ] + _flags(pair_pool=p.get("pair_pool"))
            elif self.kind == "depth":
                args += ["--analysis", "depth", "--layers", p["layers"], *_test_set_flags(p["test_set"])]
            else:
                args += [
                    "--analysis",
                    "mistakes",
                    "--layers",
                    p["layer"],
                    "--sets",
                    ",".join(p["sets"]),
                    "--n-eval",
                    p["n_eval"],
                ] + _flags(max_new_tokens=p["max_new_tokens"])
            args += ["--fresh"] if p.get("fresh") else []
        return [str(a) for a in args + (["--device", device] if device else [])]

    def command(self, checkpoint: str | Path | None, out: str | Path, device: str | None = None) -> str:
        """:meth:`argv` as a shell command line."""
        return "probekit " + shlex.join(self.argv(checkpoint, out, device))

    def to_dict(self) -> dict:
        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "checkpoint": self.checkpoint,
            "source": self.source,
            "params": self.params,
            "depends_on": self.depends_on,
        }


def _flags(**values) -> list:
    out = []
    for key, value in values.items():
        if value is not None:
            out += [f"--{key.replace('_', '-')}", value]
    return out


def split_test_set(test_set: str) -> tuple[int | None, bool]:
    """``(test_op, reask)`` of a probe test set: ``id`` (None, False), ``K`` (K, False), ``rK`` (K, True)."""
    if test_set == "id":
        return None, False
    return int(test_set.lstrip("r")), test_set.startswith("r")


def _test_set_flags(test_set: str) -> list:
    test_op, reask = split_test_set(test_set)
    return _flags(test_op=test_op) + (["--reask"] if reask else [])


# ---------------------------------------------------------------------------- expansion
def expand(cfg: SweepConfig) -> list[Job]:
    """Every job of the sweep: training runs first, then per checkpoint the analyses in the order of
    :meth:`SweepConfig.analyses`; duplicates (same ``job_id``) are dropped."""
    from probekit.checkpoint import training_family

    jobs: list[Job] = []
    sources: list[tuple[str, str, dict, str | None]] = []  # (sweep label, job label, source, preset)
    for label, folder in cfg.checkpoints.items():
        sources.append((label, label, {"path": str(folder)}, _checkpoint_preset(folder)))
    trained: dict[str, str] = {}  # checkpoint label -> train job id, for model.init_from=train:<label>
    for label, spec in cfg.train.items():
        for name, overrides in spec.variants(label):
            job = _train_job(name, spec.config, overrides, trained)
            trained[name] = job.job_id
            jobs.append(job)
            sources.append(
                (
                    label,
                    job.checkpoint,
                    {"train": job.job_id},
                    training_family({"training_config": job.params["resolved"]})[0],
                )
            )
    for sweep_label, label, source, preset in sources:
        for analysis in cfg.analyses():
            section = getattr(cfg, analysis)
            if section.checkpoints is None or sweep_label in section.checkpoints:
                jobs += EXPANDERS[analysis](section, label, source, preset)
    unique: dict[str, Job] = {}
    for job in jobs:
        unique.setdefault(job.job_id, job)
    return list(unique.values())


def _checkpoint_preset(folder) -> str:
    from probekit.checkpoint import read_provenance, training_family

    return training_family(read_provenance(folder))[0]


def _train_job(name: str, config: str, overrides: list[str], trained: dict[str, str]) -> Job:
    """A training job; ``model.init_from=train:<label>`` fine-tunes the final checkpoint of the earlier training
    run ``label`` of the sweep (the job then depends on that run)."""
    from probekit.train.config import TrainConfig, load_config

    source = {}
    for i, text in enumerate(overrides):
        if text.startswith(f"{INIT_FROM}={TRAINED}"):
            parent = text.split("=", 1)[1][len(TRAINED) :]
            if parent not in trained:
                raise ConfigError(
                    f"train.{name}: {text}: no earlier training run is labelled {parent!r}; "
                    f"labels: {', '.join(trained) or 'none'}"
                )
            source = {"train": trained[parent]}
            overrides = [*overrides[:i], f"{INIT_FROM}={TRAINED}{trained[parent]}", *overrides[i + 1 :]]
    resolved = load_config(config, overrides).to_dict()
    resolved["run"].pop("out", None)
    resolved["run"].pop("progress", None)
    defaults = TrainConfig().to_dict()
    for section, key in ADDED_KEYS:
        if resolved[section].get(key) == defaults[section][key]:
            del resolved[section][key]
    return Job("train", name, source, {"config": config, "overrides": overrides, "resolved": resolved})


def _accuracy_jobs(section, label: str, source: dict, preset: str | None) -> list[Job]:
    from probekit.evaluate.sets import parse_sets

    preset = section.preset or preset or "med"
    tokens = []
    for token in section.sets:
        for s in parse_sets(token, preset):
            prefix = "h" if s.split == "heldout" else "r" if s.reask else ""
            tokens.append("unforced" if s.op is None else f"{prefix}{s.op}")
    jobs = []
    for token, seed, decoding in itertools.product(dict.fromkeys(tokens), section.seeds, section.decodings):
        params = {
            "set": token,
            "n": section.n,
            "seed": seed,
            "samples": section.samples,
            "temperature": section.temperature if section.samples else None,
            "max_new_tokens": section.max_new_tokens,
            "preset": section.preset,
            "format": section.format,
        }
        if decoding != "greedy":  # the default stays out of the job id (ids of earlier stores are unchanged)
            params["decoding"] = decoding
        jobs.append(Job("accuracy", label, source, params, {"batch_size": section.batch_size}))
    return jobs


def _probe_params(section: ProbeSettings) -> dict:
    keys = ("n_train", "n_test", "per_problem", "steps", "lr", "batch_size", "op", "preset", "format")
    params = {k: getattr(section, k) for k in keys}
    if section.amp != "auto":  # the defaults stay out of the job id (ids of earlier stores are unchanged)
        params["amp"] = section.amp
    if section.batches != "examples":
        params["batches"] = section.batches
    return params


def _analysis_jobs(kind: str, section, label: str, source: dict, axes: dict, fixed: dict) -> list[Job]:
    """One ``kind`` job per point of the grid ``axes`` (param -> the section's values, the first varying
    slowest), with the params ``fixed`` and the probe settings of ``section``."""
    fixed = {**fixed, **_probe_params(section)}
    return [
        Job(kind, label, source, {**dict(zip(axes, point)), **fixed}, {"micro_batch_size": section.micro_batch_size})
        for point in itertools.product(*axes.values())
    ]


def _probe_jobs(section, label: str, source: dict, preset: str | None) -> list[Job]:
    axes = {
        "model": section.models,
        "task": section.tasks,
        "layer": section.layers,
        "rank": section.ranks,
        "seed": section.seeds,
        "test_set": section.test_sets,
    }
    fixed = {"controls": section.controls, "mdl": section.mdl, "bootstrap": section.bootstrap}
    if section.pair_pool != "problem":  # the defaults stay out of the job id
        fixed["pair_pool"] = section.pair_pool
    if section.fresh:
        fixed["fresh"] = True
    if not section.by_rank:
        return _analysis_jobs("probe", section, label, source, axes, fixed)
    jobs = []
    for rank in section.ranks:  # a rank of by_rank: its own tasks and settings
        own = section.by_rank.get(rank) or RankSettings()
        tasks = [t for t in section.tasks if own.tasks is None or t in own.tasks]
        ranked = _analysis_jobs("probe", section, label, source, {**axes, "task": tasks, "rank": [rank]}, fixed)
        jobs += [replace(j, params={**j.params, **own.overrides()}) for j in ranked]
    return jobs


def _mistakes_jobs(section: MistakesSection, label: str, source: dict, preset: str | None) -> list[Job]:
    axes = {"model": section.models, "layer": section.layers, "rank": section.ranks, "seed": section.seeds}
    fixed = {"sets": list(section.sets), "n_eval": section.n_eval, "max_new_tokens": section.max_new_tokens}
    return _analysis_jobs("mistakes", section, label, source, axes, fixed)


def _depth_jobs(section, label: str, source: dict, preset: str | None) -> list[Job]:
    axes = {"model": section.models, "rank": section.ranks, "seed": section.seeds, "test_set": section.test_sets}
    fixed = {"layers": section.layers, **({"fresh": True} if section.fresh else {})}  # the default stays out of the id
    return _analysis_jobs("depth", section, label, source, axes, fixed)


def _patch_jobs(section: PatchSection, label: str, source: dict, preset: str | None) -> list[Job]:
    fixed = {
        "n": section.n,
        "components": list(section.components),
        "roles": list(section.roles),
        "direction": section.direction,
        "generate": section.generate,
        "preset": section.preset,
        "format": section.format,
    }
    return [
        Job(
            "patch",
            label,
            source,
            {"pair_kind": kind, "op": op, "seed": seed, **fixed},
            {"batch_size": section.batch_size},
        )
        for kind, op, seed in itertools.product(section.pair_kinds, section.ops, section.seeds)
    ]


def _intervene_jobs(section: InterveneSection, label: str, source: dict, preset: str | None) -> list[Job]:
    fixed = {
        "n_random": section.n_random,
        "positions": section.positions,
        "n_train": section.n_train,
        "n_test": section.n_test,
        "steps": section.steps,
        "sets": ",".join(section.sets),
        "n_eval": section.n,
        "max_new_tokens": section.max_new_tokens,
        "bootstrap": section.bootstrap,
    }
    jobs = []
    axes = (section.tasks, section.layers, section.ranks, section.modes, section.seeds)
    for task, layer, rank, mode, seed in itertools.product(*axes):
        how = {"strength": section.strength} if mode == "steer" else {"ablate_value": section.ablate_value}
        params = {"task": task, "layer": layer, "rank": rank, "mode": mode, "seed": seed, **how, **fixed}
        jobs.append(Job("intervene", label, source, params, {"batch_size": section.batch_size}))
    return jobs


EXPANDERS = {
    "accuracy": _accuracy_jobs,
    "probe": _probe_jobs,
    "mistakes": _mistakes_jobs,
    "depth": _depth_jobs,
    "patch": _patch_jobs,
    "intervene": _intervene_jobs,
}


def select(jobs: list[Job], kinds: list[str] | None) -> list[Job]:
    """The jobs of ``kinds`` (None: all) plus the training jobs they depend on."""
    if not kinds:
        return jobs
    allowed = {"train", *EXPANDERS}
    bad = [k for k in kinds if k not in allowed]
    if bad:
        raise ConfigError(f"--only: unknown kind {bad[0]!r}; allowed: {', '.join(sorted(allowed))}")
    by_id = {j.job_id: j for j in jobs}
    keep = {j.job_id for j in jobs if j.kind in kinds}
    frontier = list(keep)
    while frontier:  # training runs the chosen jobs need, and the runs those fine-tune
        dep = by_id[frontier.pop()].depends_on
        if dep and dep not in keep:
            keep.add(dep)
            frontier.append(dep)
    return [j for j in jobs if j.job_id in keep]
