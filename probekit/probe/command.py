"""``probekit probe CKPT``: V-probe a checkpoint (and a random-init copy) on fresh iGSM probe data.

``register(subparsers)`` adds the subcommand (argparse only; torch is imported when it runs). Train data come
from train-split templates, test data from test-split templates (``probekit.probe.data.train_test_data``),
``--n-train`` / ``--n-test`` problems, each giving up to ``--per-problem`` examples per task. Progress bars and
the results table go to stderr; ``--json`` prints a JSON list of result records to stdout; ``--out DIR`` writes
``results.jsonl``, ``results.csv``, ``data.json`` (per-task data summary, examples left out as too long) and
each fitted probe under ``probes/<model>-<task>-<layer>/``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

TASK_CHOICES = ("nece", "dep", "known", "value", "can_next", "nece_next", "all")


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "probe", help="V-probe a checkpoint on the six iGSM probe tasks",
        description="Fit V-probes (frozen model, rank-r embedding update, linear head at [END]) on fresh probe "
                    "data from train-split templates and score them on test-split templates.")
    p.add_argument("ckpt", help="checkpoint folder (config.json, model.safetensors, tokenizer.json)")
    p.add_argument("--task", default="nece",
                   help=f"task, comma list or 'all' (tasks: {', '.join(TASK_CHOICES[:-1])}; default nece)")
    p.add_argument("--layers", default="-1",
                   help="'all' (every block), or a comma list of block indices (negative from the end) or hook "
                        "names; default -1 = the last block's resid_post")
    p.add_argument("--rank", type=int, default=8, help="rank of the embedding update; 0 = linear probe (default 8)")
    p.add_argument("--baseline", choices=("random-init", "none"), default="none",
                   help="also probe the same architecture randomly initialised (default none)")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps per probe (default 1000; paper 100000)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak LR, linear decay to 0 (default 0.002)")
    p.add_argument("--batch-size", type=int, default=256, help="examples per step (default 256)")
    p.add_argument("--micro-batch-size", type=int, default=None,
                   help="examples per forward (gradient accumulation; default: batch on CUDA, 32 on CPU)")
    p.add_argument("--n-train", type=int, default=1000, help="train problems (default 1000)")
    p.add_argument("--n-test", type=int, default=400, help="test problems (default 400)")
    p.add_argument("--per-problem", type=int, default=10, help="examples per problem and task (default 10)")
    p.add_argument("--preset", choices=("med", "hard"), default=None,
                   help="iGSM preset (default: the checkpoint's training data preset, else med)")
    p.add_argument("--format", choices=("pq", "qp"), default="pq", help="problem format (default pq)")
    p.add_argument("--op", type=int, default=None, help="force the op of every problem")
    p.add_argument("--test-op", type=int, default=None, help="force the op of the test problems")
    p.add_argument("--reask", action="store_true", help="re-asked test problems")
    p.add_argument("--seed", type=int, default=0, help="data and probe seed (default 0)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--compile", action="store_true", help="torch.compile the probe forward (CUDA)")
    p.add_argument("--out", default=None, help="folder for results and fitted probes")
    p.add_argument("--json", action="store_true", help="print the result records as a JSON list on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_command)
    return p


def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


def run_command(args) -> int:
    import warnings

    import torch
    from tqdm import tqdm

    from probekit.modeling import load_checkpoint
    from probekit.probe.data import parse_tasks, train_test_data
    from probekit.probe.layers import probe_layers, random_init_like

    tasks = parse_tasks(args.task)
    if not tasks:
        raise ValueError("no task given")
    if args.rank < 0 or args.steps < 1 or args.n_train < 1 or args.n_test < 1:
        raise ValueError("--rank must be >= 0; --steps, --n-train and --n-test >= 1")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer, provenance = load_checkpoint(args.ckpt, device=device)
    trained_on = provenance.get("data") or (provenance.get("training_config") or {}).get("data") or {}
    preset = args.preset or trained_on.get("preset") or "med"
    context = int(model.config.max_position_embeddings)

    with tqdm(total=args.n_train + args.n_test, desc="probe data", unit="problem", file=sys.stderr,
              disable=args.quiet, dynamic_ncols=True) as bar, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # too-long examples are counted and reported below
        train, test = train_test_data(preset, args.format, args.n_train, args.n_test, args.seed, args.op,
                                      args.test_op, args.reask, tasks, tokenizer=tokenizer,
                                      per_problem=args.per_problem, max_len=context, progress=bar.update)
    summary = {"train": train.summary(), "test": test.summary(), "context": context, "preset": preset,
               "format": args.format}
    dropped = {k: train.n_too_long.get(k, 0) + test.n_too_long.get(k, 0) for k in tasks}
    if any(dropped.values()):
        print(f"probekit probe: left out {sum(dropped.values())} examples longer than the context ({context}): "
              + ", ".join(f"{k}={v}" for k, v in dropped.items() if v), file=sys.stderr)

    models = [("pretrained", model)]
    if args.baseline == "random-init":
        models.append(("random-init", random_init_like(model, seed=args.seed)))
    probe_kwargs = dict(steps=args.steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed, device=device,
                        compile=args.compile, micro_batch_size=args.micro_batch_size)
    records, frames = [], []
    for label, m in models:
        for task in tasks:
            if not len(train.task(task)) or not len(test.task(task)):
                raise ValueError(f"no {task!r} examples (all longer than the context?)")
            start = time.perf_counter()
            frame, probes = probe_layers(m, train, test, task, layers=args.layers, rank=args.rank,
                                         model_label=label, return_probes=True,
                                         progress=False if args.quiet else f"{label} {task}", **probe_kwargs)
            seconds = time.perf_counter() - start
            frame["n_train"] = len(train.task(task))
            frame["n_too_long"] = train.n_too_long.get(task, 0) + test.n_too_long.get(task, 0)
            frame["steps"] = args.steps
            frame["seconds"] = round(seconds / len(frame), 3)
            frame["checkpoint"] = str(args.ckpt)
            frames.append(frame)
            if args.out:
                from pathlib import Path

                for name, probe in probes.items():
                    layer = name.replace(".hook_resid_post", "").replace(".", "")
                    if label == "pretrained":
                        probe.model_path_ = str(Path(args.ckpt).resolve())
                    probe.save(Path(args.out) / "probes" / f"{label}-{task}-{layer}")

    import pandas as pd

    table = pd.concat(frames, ignore_index=True)
    records = [{k: _clean(v) for k, v in row.items()} for row in table.to_dict("records")]
    shown = table[["model", "task", "layer", "rank", "accuracy", "accuracy_pos", "accuracy_neg", "majority", "n"]]
    print("\n" + shown.to_string(index=False, float_format=lambda x: f"{x:.4f}"), file=sys.stderr)
    if args.out:
        from pathlib import Path

        from probekit.records import write_atomic

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "results.jsonl", "".join(json.dumps(r) + "\n" for r in records))
        write_atomic(out / "results.csv", table.to_csv(index=False))
        write_atomic(out / "data.json", json.dumps(summary, indent=2) + "\n")
        print(f"results in {out}/", file=sys.stderr)
    if args.json:
        print(json.dumps(records))
    return 0
