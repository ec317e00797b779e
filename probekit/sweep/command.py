"""``probekit run CONFIG.yaml``: expand a sweep into jobs, run the unfinished ones, merge the results store.

``--dry-run`` prints the expanded jobs (``--dry-run --json``: a JSON list of objects, each with its stable
``job_id``, ``kind``, ``checkpoint``, ``params``, ``depends_on``, ``done``, ``inputs_changed`` and the
equivalent ``probekit`` ``command``) and runs nothing. Otherwise the unfinished jobs run, each a library call
(:mod:`probekit.sweep.runners`; ``--executor local``: one worker per GPU, or ``--workers`` processes
on CPU; ``--executor submitit``: Slurm through submitit) under a progress bar with ETA, and ``--json`` prints a
summary object on stdout. A job is finished when its rows were computed from inputs of the same content as now
(:mod:`probekit.sweep.inputs`); the jobs whose rows were replaced because their inputs changed (a checkpoint
retrained or overwritten) are listed on stderr and in the summary's ``replaced``. Exit status: 0 when every job
finished, 1 when some failed (they are retried by the next run), 2 for a bad config (nothing runs).
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``run`` subcommand (argparse only; torch is imported when jobs run)."""
    p = subparsers.add_parser(
        "run",
        help="run a sweep of training, evaluation and probe jobs (resumable) into a results store",
        description="Expand CONFIG.yaml (checkpoints or training runs x analyses x grids; see "
        "probekit/sweep/config.py and experiments/) into jobs and run the unfinished ones. Each job's "
        "rows are stored in DIR/jobs/<job_id>.parquet and merged into DIR/results.parquet.",
    )
    p.add_argument("config", metavar="CONFIG.yaml", help="sweep config")
    p.add_argument("--results", metavar="DIR", help="results store (default: the config's 'results', else out/<name>)")
    p.add_argument("--dry-run", action="store_true", help="print the expanded jobs and run nothing")
    p.add_argument(
        "--only",
        metavar="KINDS",
        help="run only these job kinds, a comma list of train, accuracy, probe, mistakes, depth, patch, intervene",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override the config's device")
    p.add_argument(
        "--executor",
        choices=("local", "submitit"),
        default="local",
        help="local workers (default) or Slurm through submitit",
    )
    p.add_argument("--workers", type=int, help="local worker processes (default: one per GPU, else 1)")
    c = p.add_argument_group("submitit (--executor submitit)")
    c.add_argument(
        "--cluster",
        choices=("slurm", "local", "debug"),
        default=None,
        help="submitit cluster (default: Slurm when available, else local)",
    )
    c.add_argument("--slurm-partition", help="Slurm partition")
    c.add_argument("--timeout-min", type=int, default=240, help="time limit per job in minutes (default 240)")
    c.add_argument("--gpus-per-job", type=int, default=None, help="GPUs per job (default 1 with --device cuda)")
    c.add_argument("--cpus-per-job", type=int, default=None, help="CPU cores per job")
    p.add_argument("--json", action="store_true", help="JSON on stdout (the job list with --dry-run, else a summary)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_command)
    return p


def run_command(args) -> int:
    from probekit.configs import ConfigError
    from probekit.sweep.config import load_sweep
    from probekit.sweep.jobs import expand, select
    from probekit.sweep.store import ResultsStore

    try:
        cfg = load_sweep(args.config)
        every_job = expand(cfg)
        jobs = select(every_job, args.only.split(",") if args.only else None)
    except ConfigError as err:
        print(f"probekit run: config error: {err}", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        print("probekit run: --workers must be >= 1", file=sys.stderr)
        return 2
    store = ResultsStore(args.results or cfg.results_dir)
    device = args.device or cfg.device
    device = None if device == "auto" else device
    if args.dry_run:
        return _dry_run(jobs, store, device, args.json)

    from probekit.sweep.execute import run_jobs

    store.root.mkdir(parents=True, exist_ok=True)
    store.write_jobs([j.to_dict() for j in every_job])  # the sweep's jobs (with --only too), as merged
    cluster = {
        "cluster": args.cluster,
        "timeout_min": args.timeout_min,
        "slurm_partition": args.slurm_partition,
        "gpus_per_node": args.gpus_per_job if args.gpus_per_job is not None else (1 if device == "cuda" else None),
        "cpus_per_task": args.cpus_per_job,
    }
    if not args.quiet:
        print(f"probekit run: {cfg.name}: {len(jobs)} jobs, results in {store.root}/", file=sys.stderr)
    summary = run_jobs(
        jobs,
        store.root,
        device=device,
        sweep=cfg.name,
        executor=args.executor,
        workers=args.workers,
        cluster=cluster,
        progress=not args.quiet,
        sweep_jobs=every_job,
    )
    result = {"sweep": cfg.name, "results": str(store.results_path), **summary.to_dict()}
    if args.json:
        print(json.dumps(result))
    if not args.quiet or summary.failed or summary.replaced:
        print(
            f"probekit run: {summary.already_done} already done, {len(summary.finished)} finished, "
            f"{len(summary.failed)} failed, {len(summary.skipped)} skipped, {len(summary.replaced)} replaced "
            f"(inputs changed) in {summary.seconds:.0f}s; results: {store.results_path}",
            file=sys.stderr,
        )
        for job_id, reason in {**summary.failed, **summary.skipped}.items():
            print(f"  {job_id}: {reason}", file=sys.stderr)
        for r in summary.replaced:
            print(
                f"  replaced {r['job_id']}: {', '.join(r['changed'])} changed; "
                f"{'ran again' if r['rerun'] else 'not run (not selected)'}; old rows in {r['old_rows']}",
                file=sys.stderr,
            )
    return 1 if summary.failed or summary.skipped else 0


def _dry_run(jobs, store, device, as_json: bool) -> int:
    from probekit.sweep.execute import job_output, job_state

    finished = store.finished()
    states: dict[str, str] = {}
    listing = []
    for job in jobs:
        dep = job.depends_on
        if job.job_id not in finished:
            states[job.job_id] = "todo"
        elif dep is not None and states.get(dep, "done") != "done":
            states[job.job_id] = "changed"  # its training job runs again first: its checkpoint will change
        else:
            states[job.job_id] = job_state(job, store)
        checkpoint = job.source.get("path") or f"<checkpoint of {job.depends_on}>"
        listing.append(
            {
                **job.to_dict(),
                "done": states[job.job_id] == "done",
                "inputs_changed": states[job.job_id] == "changed",
                "command": job.command(checkpoint, job_output(job, store), device),
            }
        )
    if as_json:
        print(json.dumps(listing))
        return 0
    for item in listing:
        state = "done" if item["done"] else "changed" if item["inputs_changed"] else "todo"
        print(f"{state}  {item['job_id']}\n      {item['command']}")
    print(
        f"{len(listing)} jobs, {sum(i['done'] for i in listing)} done, "
        f"{sum(i['inputs_changed'] for i in listing)} with changed inputs; results store {store.root}/",
        file=sys.stderr,
    )
    return 0
