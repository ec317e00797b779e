"""How each kind of sweep job runs: the library spec its settings give (:func:`job_spec`) and the rows of the
library function of its kind (:func:`job_rows`), the functions ``probekit train | eval | probe`` call:

- ``train``: :func:`probekit.train.job.run_training` (resumes the run in its folder); one row,
  :func:`probekit.train.curve.run_summary` of its ``log.jsonl`` (the last loss record, the last learning-curve
  evaluation, the whole curve);
- ``accuracy``: :func:`probekit.evaluate.job.run_eval` on one set; its ``summary.parquet`` row (accuracy with
  its Wilson interval, accuracy by op, unnecessary parameters, mistake kinds, single-step fit, always-0
  baseline, Pass@N / PassRatio@N when sampling);
- ``probe``: :func:`probekit.probe.experiment.run_probe` (one model, task, layer, rank, seed); its result row
  (accuracy, on positive / negative labels and on unnecessary parameters, controls, majority baseline, n) with
  ``test_set``;
- ``mistakes``: :func:`probekit.probe.experiment.run_mistakes`; the rows of the two conditional tables (column
  ``analysis``: ``unnecessary`` | ``first_error``);
- ``depth``: :func:`probekit.probe.experiment.run_depth`; one row per layer and distance, with ``test_set``;
- ``patch``: :func:`probekit.causal.patching.run_patch` on pairs made from generated test problems (``--op``);
  one row per pair x hook point x role (or a skipped pair's row with its reason);
- ``intervene``: :func:`probekit.causal.interventions.run_intervention`; one row per direction (none, the
  probe's, the random ones).

Every job runs quietly (no progress bars) and writes its files to its output folder (an accuracy job to its
``eval`` subfolder, which the evaluation replaces as a whole). A job's
:meth:`~probekit.sweep.jobs.Job.argv` is the equivalent command line (``tests/integration/test_sweep.py`` checks that the
command parses into the same spec).
"""

from __future__ import annotations

from pathlib import Path

from probekit.sweep.jobs import Job, split_test_set


def _pick(params: dict, *keys: str) -> dict:
    """The entries ``keys`` of ``params`` (the spec fields named like the job's params)."""
    return {k: params[k] for k in keys}


def job_spec(job: Job, checkpoint: str | Path | None, out: str | Path, device: str | None = None):
    """The library spec of ``job``, reading ``checkpoint`` (for a train job: the one it fine-tunes, or None)
    and writing to ``out``; ``device`` None picks cuda when available."""
    p, o = job.params, job.options
    if job.kind == "train":
        from probekit.train.job import TrainRun

        return TrainRun(p["config"], job.train_overrides(checkpoint, device), out=str(out), resume=True, progress=False)
    if job.kind == "accuracy":
        from probekit.evaluate.job import EvalSpec

        spec = EvalSpec(
            str(checkpoint),
            sets=p["set"],
            **_pick(p, "n", "seed", "samples", "preset", "format", "max_new_tokens"),
            batch_size=o.get("batch_size"),
            device=device,
            workers=1,
            decoding=p.get("decoding", "greedy"),
            out=str(Path(out) / "eval"),  # its own folder (replaced as a whole), beside the job's log
            progress=False,
        )
        if p["samples"]:
            spec.temperature = p["temperature"]
        return spec
    if job.kind == "patch":
        from probekit.causal.patching import PatchSpec

        return PatchSpec(
            str(checkpoint),
            op=p["op"],
            pair_kind=p["pair_kind"],
            n=p["n"],
            seed=p["seed"],
            components=tuple(p["components"]),
            roles=tuple(p["roles"]),
            direction=p["direction"],
            generate=p["generate"],
            preset=p["preset"],
            format=p["format"],
            **({"batch_size": o["batch_size"]} if o.get("batch_size") else {}),
            device=device,
        )
    if job.kind == "intervene":
        from probekit.causal.interventions import InterveneSpec

        how = {"strength": p["strength"]} if p["mode"] == "steer" else {"ablate_value": p["ablate_value"]}
        return InterveneSpec(
            str(checkpoint),
            task=p["task"],
            layer=str(p["layer"]),
            rank=p["rank"],
            mode=p["mode"],
            **how,
            **_pick(p, "n_random", "positions", "n_train", "n_test", "steps", "sets", "n_eval", "max_new_tokens"),
            bootstrap=p["bootstrap"],
            seed=p["seed"],
            device=device,
            batch_size=o.get("batch_size"),
            progress=False,
        )
    from probekit.probe.experiment import DepthSpec, MistakesSpec, ProbeSpec

    common = dict(
        checkpoint=str(checkpoint),
        models=(p["model"],),
        **_pick(p, "rank", "seed", "n_train", "per_problem", "steps", "lr", "batch_size", "format", "op", "preset"),
        micro_batch_size=o.get("micro_batch_size"),
        amp=p.get("amp", "auto"),
        batches=p.get("batches", "examples"),
        device=device,
        out=str(out),
        progress=False,
    )
    if job.kind == "mistakes":
        return MistakesSpec(
            **common,
            layers=str(p["layer"]),
            sets=",".join(p["sets"]),
            **_pick(p, "n_eval", "max_new_tokens"),
        )
    test_op, reask = split_test_set(p["test_set"])
    tested = dict(n_test=p["n_test"], test_op=test_op, reask=reask, fresh=p.get("fresh", False))
    if job.kind == "depth":
        return DepthSpec(**common, **tested, layers=str(p["layers"]))
    return ProbeSpec(
        **common,
        **tested,
        tasks=p["task"],
        layers=str(p["layer"]),
        **_pick(p, "controls", "mdl", "bootstrap"),
        pair_pool=p.get("pair_pool", "problem"),
    )


def job_rows(job: Job, spec) -> list[dict]:
    """Run ``spec`` (:func:`job_spec` of ``job``) with the library function of the job's kind; its rows."""
    if job.kind == "train":
        from probekit.train.job import run_training

        return run_training(spec).rows()
    if job.kind == "accuracy":
        from probekit.evaluate.job import run_eval

        return run_eval(spec).summary_records()
    if job.kind == "patch":
        from probekit.causal.patching import json_rows, run_patch

        return json_rows(run_patch(spec))
    if job.kind == "intervene":
        from probekit.causal.interventions import run_intervention

        return run_intervention(spec)
    from probekit.probe.experiment import run_depth, run_mistakes, run_probe

    if job.kind == "mistakes":
        return run_mistakes(spec).records()
    run = run_depth if job.kind == "depth" else run_probe
    return [{**r, "test_set": job.params["test_set"]} for r in run(spec).records()]
