"""``probekit probe CKPT``: V-probe a checkpoint (and a random-init copy) on fresh iGSM probe data.

``register(subparsers)`` adds the subcommand (argparse only; torch is imported when it runs). Train data come
from train-split templates, test data from test-split templates (``probekit.probe.data.train_test_data``),
``--n-train`` / ``--n-test`` problems, each giving up to ``--per-problem`` examples per task. Progress bars and
the results table go to stderr; ``--json`` prints a JSON list of result records to stdout; ``--out DIR`` writes
``results.jsonl``, ``results.csv``, ``data.json`` (per-task data summary, examples left out as too long) and
each fitted probe under ``probes/<model>-<task>-<layer>/`` (further ``--seeds`` under ``probes/seed<S>/``).

Controls and statistics in every result row (:mod:`probekit.probe.layers`, :mod:`probekit.probe.stats`):

- ``majority`` (the train-prior baseline); the random-init model is its own row (``--models random-init`` /
  ``--baseline random-init``);
- ``--controls`` (default; ``--no-controls`` turns it off, its columns are then null): the control task of
  Hewitt and Liang (2019), the same probe (rank, layer, steps, seed) trained and scored on labels assigned at
  random per parameter name (dep: per (A, B) pair) with the real task's label distribution, seeded by the probe
  seed: ``control_accuracy``, ``control_majority``, ``selectivity`` = accuracy - control_accuracy;
- ``--bootstrap N`` (default 1000; 0 = off): 95% percentile intervals over test problems (resampling problems,
  not examples), seeded by the probe seed: ``ci_low`` / ``ci_high``, ``ci_low_pos`` / ``ci_high_pos``,
  ``ci_low_neg`` / ``ci_high_neg``, ``ci_low_unnecessary`` / ``ci_high_unnecessary``, ``ci_low_control`` /
  ``ci_high_control``, ``ci_low_selectivity`` / ``ci_high_selectivity``; ``n_problems``, ``bootstrap``;
- ``--mdl``: the online code length of the train labels given the layer's features (Voita and Titov 2020),
  always with rank-0 probes on the frozen features (computed once; fast): ``mdl_bits``, ``uniform_bits``,
  ``compression`` = uniform / mdl, ``control_mdl_bits``, ``control_compression`` (null without ``--mdl``);
- ``--seeds K``: every probe is repeated with probe seeds ``--seed`` .. ``--seed + K - 1`` (the data and the
  random-init model stay those of ``--seed``); each seed is a row (column ``seed``) and the command prints
  mean ± std over the seeds.

``--analysis mistakes|depth`` runs an analysis of :mod:`probekit.probe.analysis` instead (``--task`` is then
ignored):

- ``mistakes`` (paper §5, Fig. 8): the nece probe on the parameters a model wrote although unnecessary, and the
  can_next / nece_next probes just before each wrong solution's first wrong parameter. Solutions come from
  ``--records`` (a ``probekit eval`` ``records.jsonl`` or its folder) or are generated here with the evaluation
  package (``--sets``, default ``ood,reask``; ``--n-eval`` problems per set; records then go to ``OUT/eval/``).
  Probes come from ``--probes DIR`` (a ``probekit probe --out`` folder) or are trained here on ``--n-train``
  train-split problems at one layer (``--layers``, default the last block). ``--out DIR`` writes
  ``unnecessary.csv``, ``first_error.csv`` (summary tables), ``unnecessary_examples.csv``,
  ``first_error_examples.csv`` (one row per probe example with its prediction; each also as ``.parquet`` when
  pyarrow is installed), ``counts.json`` and the probes trained here under ``probes/``.
- ``depth`` (§6, Fig. 10): one nece probe per layer (``--layers``, default ``all``) trained on ``--n-train``
  train-split problems, scored on every necessary parameter of ``--n-test`` test-split problems, binned by
  distance to the query. ``--out DIR`` writes ``depth.csv`` (and ``.parquet``) and ``data.json``.

``--json`` prints the summary rows as one JSON list on stdout, each with ``analysis`` (``unnecessary``,
``first_error`` or ``depth``) and ``model``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from probekit.records import table_records

TASK_CHOICES = ("nece", "dep", "known", "value", "can_next", "nece_next", "all")
MODEL_CHOICES = ("pretrained", "random-init")


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "probe", help="V-probe a checkpoint on the six iGSM probe tasks",
        description="Fit V-probes (frozen model, rank-r embedding update, linear head at [END]) on fresh probe "
                    "data from train-split templates and score them on test-split templates.")
    p.add_argument("ckpt", help="checkpoint folder (config.json, model.safetensors, tokenizer.json)")
    p.add_argument("--task", default="nece",
                   help=f"task, comma list or 'all' (tasks: {', '.join(TASK_CHOICES[:-1])}; default nece)")
    p.add_argument("--layers", default=None,
                   help="'all' (every block), or a comma list of block indices (negative from the end) or hook "
                        "names; default -1 = the last block's resid_post ('all' with --analysis depth)")
    p.add_argument("--rank", type=int, default=8, help="rank of the embedding update; 0 = linear probe (default 8)")
    p.add_argument("--baseline", choices=("random-init", "none"), default="none",
                   help="also probe the same architecture randomly initialised (default none)")
    p.add_argument("--models", type=_models_list, default=("pretrained",),
                   help="which models to probe, a comma list of pretrained and random-init (default pretrained; "
                        "--baseline random-init adds random-init)")
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
    p.add_argument("--seeds", type=int, default=1,
                   help="repeat every probe with probe seeds SEED..SEED+K-1 (one row each, mean ± std printed; "
                        "default 1)")
    p.add_argument("--controls", action=argparse.BooleanOptionalAction, default=True,
                   help="also fit the control-task probe (random labels per parameter name; Hewitt and Liang 2019): "
                        "control_accuracy, selectivity (default on)")
    p.add_argument("--mdl", action=argparse.BooleanOptionalAction, default=False,
                   help="also report the online code length of the labels (Voita and Titov 2020; rank-0 probes on "
                        "frozen features): mdl_bits, uniform_bits, compression (default off)")
    p.add_argument("--bootstrap", type=int, default=1000,
                   help="bootstrap resamples over test problems for the 95%% intervals (0 = none; default 1000)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--compile", action="store_true", help="torch.compile the probe forward (CUDA)")
    p.add_argument("--amp", choices=("auto", "bf16", "fp32"), default="auto",
                   help="autocast of the frozen model: auto (bf16 on CUDA, fp32 on CPU), bf16 (also on a CPU with "
                        "native bf16, about 1.7x faster there), fp32")
    p.add_argument("--skip-checks", action="store_true",
                   help="do not run the fast load-time model checks (probekit inspect --fast) first; recorded in "
                        "the results as checks_skipped")
    p.add_argument("--out", default=None, help="folder for results and fitted probes")
    p.add_argument("--json", action="store_true", help="print the result records as a JSON list on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.add_argument_group("analyses (probekit.probe.analysis)")
    a.add_argument("--analysis", choices=("mistakes", "depth"), default=None,
                   help="mistakes: probes against the model's own mistakes (Fig. 8); depth: nece accuracy per layer "
                        "and distance to the query (Fig. 10). --task is ignored")
    a.add_argument("--records", default=None,
                   help="mistakes: the model's solutions, a 'probekit eval' records.jsonl or its folder "
                        "(default: generate them here on --sets)")
    a.add_argument("--sets", default="ood,reask",
                   help="mistakes without --records: evaluation sets to generate on (probekit eval --sets syntax; "
                        "default ood,reask)")
    a.add_argument("--n-eval", type=int, default=4096,
                   help="mistakes without --records: problems per set (default 4096)")
    a.add_argument("--max-new-tokens", type=int, default=None,
                   help="mistakes without --records: fixed generation budget (default: probekit eval's)")
    a.add_argument("--probes", default=None,
                   help="mistakes: folder with saved nece, can_next and nece_next probes (a 'probekit probe --out' "
                        "folder; default: train them here)")
    a.add_argument("--nece-per-problem", type=_count_or_all, default=10,
                   help="mistakes: at most this many necessary and as many unwritten-unnecessary nece examples per "
                        "solution, or 'all' (default 10; written unnecessary parameters are always all kept)")
    a.add_argument("--correct-per-problem", type=_count_or_all, default=10,
                   help="mistakes: correct steps probed per solution and task, or 'all' (default 10)")
    a.add_argument("--background-per-problem", type=int, default=10,
                   help="mistakes: true-false control examples per solution and task (default 10)")
    p.set_defaults(func=run_command)
    return p


def _models_list(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    bad = [n for n in names if n not in MODEL_CHOICES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown model {', '.join(bad) or text!r}: use {', '.join(MODEL_CHOICES)}")
    return names


def _count_or_all(text: str) -> int | None:
    if text == "all":
        return None
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0 or 'all'")
    return value


def run_command(args) -> int:
    import warnings

    from tqdm import tqdm

    from probekit.probe.data import parse_tasks, train_test_data
    from probekit.probe.layers import probe_layers

    if args.analysis:
        return run_analysis(args)
    if args.layers is None:
        args.layers = "-1"
    tasks = parse_tasks(args.task)
    if not tasks:
        raise ValueError("no task given")
    if args.rank < 0 or args.steps < 1 or args.n_train < 1 or args.n_test < 1:
        raise ValueError("--rank must be >= 0; --steps, --n-train and --n-test >= 1")
    if args.seeds < 1 or args.bootstrap < 0:
        raise ValueError("--seeds must be >= 1 and --bootstrap >= 0")
    device, model, tokenizer, preset, context = _load(args)

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

    records, frames = [], []
    seeds = range(args.seed, args.seed + args.seeds)
    for label, m in _models(args, model):
        for task in tasks:
            if not len(train.task(task)) or not len(test.task(task)):
                raise ValueError(f"no {task!r} examples (all longer than the context?)")
            for seed in seeds:
                probe_kwargs = {**_probe_kwargs(args, device), "seed": seed}
                start = time.perf_counter()
                frame, probes = probe_layers(m, train, test, task, layers=args.layers, rank=args.rank,
                                             model_label=label, return_probes=True, controls=args.controls,
                                             bootstrap=args.bootstrap, mdl=args.mdl,
                                             progress=False if args.quiet else f"{label} {task}", **probe_kwargs)
                seconds = time.perf_counter() - start
                frame.insert(frame.columns.get_loc("rank") + 1, "seed", seed)
                frame["n_train"] = len(train.task(task))
                frame["n_too_long"] = train.n_too_long.get(task, 0) + test.n_too_long.get(task, 0)
                frame["steps"] = args.steps
                frame["amp"] = args.amp
                frame["seconds"] = round(seconds / len(frame), 3)
                frame["checkpoint"] = str(args.ckpt)
                frame["checks_skipped"] = args.skip_checks
                frames.append(frame)
                if args.out:
                    from pathlib import Path

                    folder = Path(args.out) / "probes" / ("" if seed == args.seed else f"seed{seed}")
                    for name, probe in probes.items():
                        layer = name.replace(".hook_resid_post", "").replace(".", "")
                        if label == "pretrained":
                            probe.model_path_ = str(Path(args.ckpt).resolve())
                        probe.save(folder / f"{label}-{task}-{layer}")

    import pandas as pd

    table = pd.concat(frames, ignore_index=True)
    records = table_records(table)
    columns = ["model", "task", "layer", "rank", *(["seed"] if args.seeds > 1 else []), "accuracy", "ci_low",
               "ci_high", "accuracy_pos", "accuracy_neg", "majority",
               *(["control_accuracy", "selectivity"] if args.controls else []),
               *(["compression", *(["control_compression"] if args.controls else [])] if args.mdl else []), "n"]
    print("\n" + table[columns].to_string(index=False, float_format=lambda x: f"{x:.4f}"), file=sys.stderr)
    if args.seeds > 1:
        print("\n" + seed_spread(table).to_string(index=False), file=sys.stderr)
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


# ---------------------------------------------------------------------------- analyses
def _load(args):
    """(device, model, tokenizer, preset, context) of the checkpoint, after the fast load-time checks (unless
    ``--skip-checks``); the preset defaults to the one in its ``probekit.json`` (looked up as ``probekit eval``
    does), else med."""
    import torch

    from probekit.evaluate.run import training_family
    from probekit.modeling import load_checkpoint, probe_attention

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer, provenance = load_checkpoint(args.ckpt, device=device, attn_implementation=probe_attention(device))
    if not args.skip_checks:
        from probekit.modelcheck import require_healthy

        require_healthy((model, tokenizer, provenance), device=device)
    preset = args.preset or training_family(provenance)[0]
    return device, model, tokenizer, preset, int(model.config.max_position_embeddings)


def _probe_kwargs(args, device) -> dict:
    return {"steps": args.steps, "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed, "device": device,
            "compile": args.compile, "micro_batch_size": args.micro_batch_size, "amp": args.amp}


def _show(table, columns, title):
    import pandas as pd

    shown = table[[c for c in columns if c in table]] if len(table) else pd.DataFrame(columns=columns)
    print(f"\n{title}\n" + (shown.to_string(index=False, float_format=lambda x: f"{x:.4f}") if len(shown)
                              else "(no rows)"), file=sys.stderr)


def run_analysis(args) -> int:
    if args.rank < 0 or args.steps < 1 or args.n_train < 1 or args.n_test < 1:
        raise ValueError("--rank must be >= 0; --steps, --n-train and --n-test >= 1")
    if args.background_per_problem < 0 or args.n_eval < 1:
        raise ValueError("--background-per-problem must be >= 0, --n-eval >= 1")
    if args.analysis == "depth":
        return _run_depth(args)
    return _run_mistakes(args)


def _model_labels(args) -> list[str]:
    """The models to probe: ``--models`` plus random-init with ``--baseline random-init``."""
    return list(dict.fromkeys([*args.models, *(["random-init"] if args.baseline == "random-init" else [])]))


def _models(args, model):
    """Yield ``(label, model)`` for each of :func:`_model_labels`: the checkpoint and/or its random-init control
    (built when reached, so a random-init-only run never holds two models)."""
    from probekit.probe.layers import random_init_like

    for label in _model_labels(args):
        yield label, (model if label == "pretrained" else random_init_like(model, seed=args.seed))


def _finish(args, records: list[dict]) -> None:
    if args.out:
        print(f"results in {args.out}/", file=sys.stderr)
    if args.json:
        print(json.dumps(records))


def _run_depth(args) -> int:
    import warnings

    import pandas as pd
    from tqdm import tqdm

    from probekit.probe import analysis

    device, model, tokenizer, preset, context = _load(args)
    layers = args.layers or "all"
    with tqdm(total=args.n_train + args.n_test, desc="depth data", unit="problem", file=sys.stderr,
              disable=args.quiet, dynamic_ncols=True) as bar, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # too-long examples are counted and reported below
        train, test = analysis.depth_data(preset, args.format, args.n_train, args.n_test, args.seed, args.op,
                                          args.test_op, args.reask, tokenizer, args.per_problem, context, bar.update)
    dropped = train.n_too_long.get("nece", 0) + test.n_too_long.get("nece", 0)
    if dropped:
        print(f"probekit probe: left out {dropped} examples longer than the context ({context})", file=sys.stderr)
    if not len(train) or not len(test):
        raise ValueError("no nece examples for the depth analysis (all longer than the context?)")
    tables = []
    for label, m in _models(args, model):
        start = time.perf_counter()
        table = analysis.depth_analysis(m, train, test, layers=layers, rank=args.rank,
                                        progress=False if args.quiet else f"{label} depth",
                                        **_probe_kwargs(args, device))
        table.insert(0, "model", label)
        table["seconds"] = round(time.perf_counter() - start, 3)
        table["checkpoint"] = str(args.ckpt)
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    _show(table, ["model", "layer", "distance", "n", "accuracy", "ci_low", "ci_high"],
          "nece accuracy by layer and distance")
    if args.out:
        from pathlib import Path

        from probekit.records import write_atomic

        out = Path(args.out)
        analysis.save_table(table, out / "depth")
        summary = {"train": train.summary(), "test": test.summary(), "context": context, "preset": preset,
                   "format": args.format, "n_necessary_test": len(test)}
        write_atomic(out / "data.json", json.dumps(summary, indent=2) + "\n")
    _finish(args, table_records(table, analysis="depth"))
    return 0


def _run_mistakes(args) -> int:
    import warnings
    from pathlib import Path

    import pandas as pd
    from tqdm import tqdm

    from probekit.probe import analysis, hooks
    from probekit.probe.layers import resolve_layers
    from probekit.probe.vprobe import VProbe

    device, model, tokenizer, preset, context = _load(args)
    names = resolve_layers(args.layers or "-1", hooks.n_layers(model))
    if len(names) != 1:
        raise ValueError("--analysis mistakes probes one layer: give one --layers value")
    layer = names[0]
    wanted = layer if (args.layers is not None or not args.probes) else None  # --probes alone: the deepest saved
    if args.probes and "random-init" in _model_labels(args):
        raise ValueError("a random-init model needs probes trained here: drop --probes")
    out = Path(args.out) if args.out else None

    if args.records:
        records = analysis.load_records(args.records)
    else:
        from probekit.evaluate.run import evaluate_checkpoint
        from probekit.evaluate.sets import parse_sets

        sets = parse_sets(args.sets, preset, args.n_eval, args.seed, args.format)
        report = evaluate_checkpoint(args.ckpt, sets, out=out / "eval" if out else None, device=device,
                                     batch_size=256 if device.startswith("cuda") else 32,
                                     max_new_tokens=args.max_new_tokens, progress=not args.quiet, keep_records=True,
                                     checks=False)  # _load checked the model
        records = [r for result in report.results for r in result.records]
    if not records:
        raise ValueError("no solution records to analyse")

    train = None
    if not args.probes:
        with tqdm(total=args.n_train, desc="probe data", unit="problem", file=sys.stderr, disable=args.quiet,
                  dynamic_ncols=True) as bar, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train = analysis.mistake_probe_data(preset, args.format, args.n_train, args.seed, args.op,
                                                tokenizer=tokenizer, per_problem=args.per_problem, max_len=context,
                                                progress=bar.update)
        for task in analysis.MISTAKE_TASKS:
            if not len(train.task(task)):
                raise ValueError(f"no {task!r} training examples (all longer than the context?)")

    results = []
    for label, m in _models(args, model):
        if args.probes:
            probes = {task: VProbe.load(analysis.find_probe(args.probes, task, wanted), model=m, device=device)
                      for task in analysis.MISTAKE_TASKS}
            if len({p.layer_name_ for p in probes.values()}) > 1:
                print("probekit probe: the saved probes read different layers: "
                      + ", ".join(f"{t}={p.layer_name_}" for t, p in probes.items()), file=sys.stderr)
            layer = probes["nece"].layer_name_
        else:
            kwargs = _probe_kwargs(args, device)
            probes = {task: VProbe(task, rank=args.rank, layer=layer,
                                   progress=False if args.quiet else f"{label} {task}", **kwargs).fit(m, train)
                      for task in analysis.MISTAKE_TASKS}
            if out is not None:
                for task, probe in probes.items():
                    if label == "pretrained":
                        probe.model_path_ = str(Path(args.ckpt).resolve())
                    short = layer.replace(".hook_resid_post", "").replace(".", "")
                    probe.save(out / "probes" / f"{label}-{task}-{short}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # counted in counts["n_too_long"]
            result = analysis.mistake_analysis(records, probes, model=m, tokenizer=tokenizer, max_len=context,
                                               nece_per_problem=args.nece_per_problem,
                                               correct_per_problem=args.correct_per_problem,
                                               background_per_problem=args.background_per_problem, seed=args.seed)
        results.append((label, result))

    def combined(name):
        frames = [getattr(r, name).assign(model=label) for label, r in results]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        return frame[["model", *[c for c in frame.columns if c != "model"]]]

    tables = {name: combined(name) for name in ("unnecessary", "first_error", "unnecessary_examples",
                                                 "first_error_examples")}
    counts = results[0][1].counts
    print(f"\nsolutions: {counts['solutions']} ({counts['correct']} correct, {counts['wrong']} wrong); first errors "
          f"probed: {counts['first_error_used']}; skipped: "
          + (", ".join(f"{k}={v}" for k, v in counts["skipped"].items() if v) or "none"), file=sys.stderr)
    cols = ["model", "task", "set", "group", "true_label", "n", "p_pred_true", "accuracy", "ci_low", "ci_high"]
    _show(tables["unnecessary"], cols, "nece probe at the end of the question (p_pred_true = P(probe says nece))")
    _show(tables["first_error"], cols, "can_next / nece_next probes (accuracy = P(probe = true label))")
    if out is not None:
        from probekit.records import write_atomic

        for name, frame in tables.items():
            analysis.save_table(frame, out / name)
        info = {"checkpoint": str(args.ckpt), "records": args.records or str(out / "eval" / "records.jsonl"),
                "layer": layer, "rank": args.rank, "probes": args.probes, "context": context,
                "counts": {label: r.counts for label, r in results}}
        write_atomic(out / "counts.json", json.dumps(info, indent=2) + "\n")
    records_out = []
    for name in ("unnecessary", "first_error"):
        records_out += table_records(tables[name], analysis=name)
    _finish(args, records_out)
    return 0
