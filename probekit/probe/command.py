"""``probekit probe CKPT``: V-probe a checkpoint (and a random-init copy) on fresh iGSM probe data.

``register(subparsers)`` adds the subcommand (argparse only; torch is imported when it runs); the command parses
its options into a spec (:func:`build_spec`) and calls :func:`~probekit.probe.experiment.run_probe`,
:func:`~probekit.probe.experiment.run_mistakes` or :func:`~probekit.probe.experiment.run_depth`. Train data come
from train-split templates, test data from test-split templates (``probekit.probe.data.train_test_data``),
``--n-train`` / ``--n-test`` problems, each giving up to ``--per-problem`` examples per task. Progress bars and
the results table go to stderr; ``--json`` prints a JSON list of result records to stdout; ``--out DIR`` writes
``results.jsonl``, ``results.csv``, ``data.json`` (per-task data summary, examples left out as too long) and
each fitted probe under ``probes/<model>-<task>-<layer>/`` (further ``--seeds`` under ``probes/seed<S>/``).

Controls and statistics in every result row (:mod:`probekit.probe.layers`, :mod:`probekit.probe.stats`):

- ``hook``: the read-out, ``ln_final.hook_out`` by default (the last block after the final norm, the paper's
  "last hidden state"; ``--layers -1`` or ``last_block`` reads the last block before the norm);
- ``majority`` (the train-prior baseline); the random-init model (the paper's baseline) is its own row, on by
  default (``--baseline none`` turns it off; ``--models`` names the models exactly);
- ``batch_size``: the probe batch, by default the paper's for the preset (256 for med, 128 for hard);
- ``--controls`` (default; ``--no-controls`` turns it off, its columns are then null): the control task of
  Hewitt and Liang (2019), the same probe (rank, layer, steps, seed) trained on labels assigned at random per
  control key (the counted item or category word of A, which recurs between train and test; dep: with the
  category of B's) with the real task's label distribution, seeded by the probe seed, and scored on the test
  examples whose key occurs in training: ``control_accuracy``, ``control_majority``, ``control_seen`` (their
  share), ``n_control``, ``selectivity`` = accuracy - control_accuracy on those examples;
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

``--analysis mistakes|depth`` runs an analysis of :mod:`probekit.probe.mistakes` or :mod:`probekit.probe.depth`
instead (``--task`` is then ignored):

- ``mistakes`` (paper §5, Fig. 8): the nece probe on the parameters a model wrote although unnecessary, and the
  can_next / nece_next probes just before each wrong solution's first wrong parameter. Solutions come from
  ``--records`` (a ``probekit eval`` ``records.jsonl`` or its folder) or are generated here with the evaluation
  package (``--sets``, default ``ood,reask``; ``--n-eval`` problems per set; records then go to ``OUT/eval/``).
  Probes come from ``--probes DIR`` (a ``probekit probe --out`` folder) or are trained here on ``--n-train``
  train-split problems at one layer (``--layers``, default ``ln_final.hook_out``). No random-init baseline
  unless ``--baseline random-init``. ``--out DIR`` writes
  ``unnecessary.csv``, ``first_error.csv`` (summary tables), ``unnecessary_examples.csv``,
  ``first_error_examples.csv`` (one row per probe example with its prediction; each also as ``.parquet`` when
  pyarrow is installed), ``counts.json`` and the probes trained here under ``probes/``.
- ``depth`` (§6, Fig. 10): one nece probe per layer (``--layers``, default ``all``; rank 8 V-probes unless
  ``--rank 0``, labelled ``probe = linear``) trained on ``--n-train`` train-split problems, scored on every
  necessary parameter of ``--n-test`` test-split problems, binned by distance to the query, and on up to
  ``--per-problem`` nece = false parameters per problem (``accuracy_neg``, beside ``train_prior``). ``--out DIR``
  writes ``depth.csv`` (and ``.parquet``) and ``data.json``.

``--json`` prints the summary rows as one JSON list on stdout, each with ``analysis`` (``unnecessary``,
``first_error`` or ``depth``) and ``model``.
"""

from __future__ import annotations

import argparse
import json
import sys

from probekit.configs import comma_choices
from probekit.igsm.presets import FAMILY_HELP
from probekit.probe.packing import BATCHES
from probekit.probe.readout import READOUT
from probekit.probe.runs import MODELS as MODEL_CHOICES

TASK_CHOICES = ("nece", "dep", "known", "value", "can_next", "nece_next", "all")


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "probe",
        help="V-probe a checkpoint on the six iGSM probe tasks",
        description="Fit V-probes (frozen model, rank-r embedding update, linear head at [END]) on fresh probe "
        "data from train-split templates and score them on test-split templates.",
    )
    p.add_argument("ckpt", help="checkpoint folder (config.json, model.safetensors, tokenizer.json)")
    p.add_argument(
        "--task",
        default="nece",
        help=f"task, comma list or 'all' (tasks: {', '.join(TASK_CHOICES[:-1])}; default nece)",
    )
    p.add_argument(
        "--layers",
        default=None,
        help="'all' (every block), or a comma list of block indices (negative from the end) or hook "
        "names; default ln_final.hook_out = the last block after the final norm ('all' with --analysis depth); "
        "-1 or last_block = the last block before the final norm",
    )
    p.add_argument("--rank", type=int, default=8, help="rank of the embedding update; 0 = linear probe (default 8)")
    p.add_argument(
        "--baseline",
        choices=("random-init", "none"),
        default=None,
        help="also probe the same architecture randomly initialised (default random-init; none with "
        "--analysis mistakes)",
    )
    p.add_argument(
        "--models",
        type=comma_choices(MODEL_CHOICES),
        default=None,
        help="which models to probe, exactly, a comma list of pretrained and random-init (default: pretrained, "
        "plus random-init unless --baseline none)",
    )
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps per probe (default 1000; paper 100000)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak LR, linear decay to 0 (default 0.002)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="examples per step (default: the paper's for the preset, 256 for med, 128 for hard)",
    )
    p.add_argument(
        "--micro-batch-size",
        type=int,
        default=None,
        help="examples per forward (gradient accumulation; default: batch on CUDA, 32 on CPU)",
    )
    p.add_argument(
        "--batches",
        choices=BATCHES,
        default="examples",
        help="how rank > 0 training batches are drawn: random examples (the paper's, default) or problem by "
        "problem, run packed (a problem's prompt once per step: several times faster, another batch order)",
    )
    p.add_argument("--n-train", type=int, default=1000, help="train problems (default 1000)")
    p.add_argument("--n-test", type=int, default=400, help="test problems (default 400)")
    p.add_argument("--per-problem", type=int, default=10, help="examples per problem and task (default 10)")
    p.add_argument(
        "--pair-pool",
        choices=("problem", "slots"),
        default="problem",
        help="where A and B are drawn from: the problem's parameters (default, paper App. E) or every instance "
        "slot and abstract parameter (the authors' code; the setting of the quoted 83%%/92%% all-false baselines)",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="train on new problems every epoch (--n-train problems per epoch; the paper's fresh data on the "
        "fly; rank > 0) instead of cycling the same --n-train problems",
    )
    p.add_argument(
        "--preset",
        default=None,
        help=f"{FAMILY_HELP} (default: the checkpoint's training family, else med)",
    )
    p.add_argument("--format", choices=("pq", "qp"), default="pq", help="problem format (default pq)")
    p.add_argument("--op", type=int, default=None, help="force the op of every problem")
    p.add_argument("--test-op", type=int, default=None, help="force the op of the test problems")
    p.add_argument("--reask", action="store_true", help="re-asked test problems")
    p.add_argument("--seed", type=int, default=0, help="data and probe seed (default 0)")
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="repeat every probe with probe seeds SEED..SEED+K-1 (one row each, mean ± std printed; default 1)",
    )
    p.add_argument(
        "--controls",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also fit the control-task probe (random labels per item or category word, scored on words seen "
        "in training; Hewitt and Liang 2019): control_accuracy, control_seen, selectivity (default on)",
    )
    p.add_argument(
        "--mdl",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also report the online code length of the labels (Voita and Titov 2020; rank-0 probes on "
        "frozen features): mdl_bits, uniform_bits, compression (default off)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="bootstrap resamples over test problems (mistakes: solutions) for the 95%% intervals (0 = none; "
        "Wilson intervals over examples for --analysis depth and mistakes; default 1000)",
    )
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--compile", action="store_true", help="torch.compile the probe forward (CUDA)")
    p.add_argument(
        "--amp",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="autocast of the frozen model: auto (bf16 on CUDA, fp32 on CPU), bf16 (also on a CPU with "
        "native bf16, about 1.7x faster there), fp32",
    )
    p.add_argument(
        "--skip-checks",
        action="store_true",
        help="do not run the fast load-time model checks (probekit inspect --fast) first; recorded in "
        "the results as checks_skipped",
    )
    p.add_argument("--out", default=None, help="folder for results and fitted probes")
    p.add_argument("--json", action="store_true", help="print the result records as a JSON list on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.add_argument_group("analyses (probekit.probe.mistakes, probekit.probe.depth)")
    a.add_argument(
        "--analysis",
        choices=("mistakes", "depth"),
        default=None,
        help="mistakes: probes against the model's own mistakes (Fig. 8); depth: nece accuracy per layer "
        "and distance to the query (Fig. 10). --task is ignored",
    )
    a.add_argument(
        "--records",
        default=None,
        help="mistakes: the model's solutions, a 'probekit eval' records.jsonl or its folder "
        "(default: generate them here on --sets)",
    )
    a.add_argument(
        "--sets",
        default="ood,reask",
        help="mistakes without --records: evaluation sets to generate on (probekit eval --sets syntax; "
        "default ood,reask)",
    )
    a.add_argument(
        "--n-eval", type=int, default=4096, help="mistakes without --records: problems per set (default 4096)"
    )
    a.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="mistakes without --records: fixed generation budget (default: probekit eval's)",
    )
    a.add_argument(
        "--probes",
        default=None,
        help="mistakes: folder with saved nece, can_next and nece_next probes (a 'probekit probe --out' "
        "folder; default: train them here)",
    )
    a.add_argument(
        "--nece-per-problem",
        type=_count_or_all,
        default=10,
        help="mistakes: at most this many necessary and as many unwritten-unnecessary nece examples per "
        "solution, or 'all' (default 10; written unnecessary parameters are always all kept)",
    )
    a.add_argument(
        "--correct-per-problem",
        type=_count_or_all,
        default=10,
        help="mistakes: correct steps probed per solution and task, or 'all' (default 10)",
    )
    a.add_argument(
        "--background-per-problem",
        type=int,
        default=10,
        help="mistakes: true-false control examples per solution and task (default 10)",
    )
    p.set_defaults(func=probe_command)
    return p


def _count_or_all(text: str) -> int | None:
    if text == "all":
        return None
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0 or 'all'")
    return value


def build_spec(args):
    """The library spec of parsed ``probekit probe`` arguments: a :class:`~probekit.probe.experiment.ProbeSpec`,
    or with ``--analysis`` a :class:`~probekit.probe.experiment.MistakesSpec` /
    :class:`~probekit.probe.experiment.DepthSpec`."""
    from probekit.probe.experiment import DepthSpec, MistakesSpec, ProbeSpec

    models = _models(args)
    common = dict(
        checkpoint=args.ckpt,
        models=models,
        **_named(args, "rank", "steps", "lr", "batch_size", "micro_batch_size", "n_train", "per_problem", "preset"),
        **_named(args, "format", "op", "seed", "device", "compile", "amp", "skip_checks", "out", "batches"),
        progress=not args.quiet,
    )
    tested = _named(args, "n_test", "test_op", "reask", "fresh")
    if args.analysis == "depth":
        return DepthSpec(**common, **tested, layers=args.layers or "all", bootstrap=args.bootstrap)
    if args.analysis == "mistakes":
        return MistakesSpec(
            **common,
            layers=args.layers,
            **_named(args, "records", "sets", "n_eval", "max_new_tokens", "probes"),
            **_named(args, "nece_per_problem", "correct_per_problem", "background_per_problem", "bootstrap"),
        )
    return ProbeSpec(
        **common,
        **tested,
        tasks=args.task,
        layers=READOUT if args.layers is None else args.layers,
        **_named(args, "seeds", "controls", "mdl", "bootstrap", "pair_pool"),
    )


def _models(args) -> tuple[str, ...]:
    """The models probed: ``--models`` exactly when given (plus random-init with ``--baseline random-init``);
    otherwise the checkpoint and the paper's random-init baseline, except for ``--analysis mistakes`` (whose
    saved probes read the pretrained model only) or with ``--baseline none``."""
    if args.models is not None:
        return tuple(dict.fromkeys([*args.models, *(["random-init"] if args.baseline == "random-init" else [])]))
    baseline = args.baseline or ("none" if args.analysis == "mistakes" else "random-init")
    return ("pretrained", *(["random-init"] if baseline == "random-init" else []))


def _named(args, *names: str) -> dict:
    """The parsed arguments ``names`` by name (the spec fields named like their options)."""
    return {name: getattr(args, name) for name in names}


def probe_command(args) -> int:
    """Run ``probekit probe`` from parsed arguments: the tables on stderr, ``--json`` records on stdout."""
    spec = build_spec(args)
    if args.analysis == "depth":
        records = _depth(spec)
    elif args.analysis == "mistakes":
        records = _mistakes(spec)
    else:
        records = _probe(spec)
    if args.out:
        print(f"results in {args.out}/", file=sys.stderr)
    if args.json:
        print(json.dumps(records))
    return 0


def _show(table, columns, title=None):
    import pandas as pd

    shown = table[[c for c in columns if c in table]] if len(table) else pd.DataFrame(columns=columns)
    text = shown.to_string(index=False, float_format=lambda x: f"{x:.4f}") if len(shown) else "(no rows)"
    print("\n" + (f"{title}\n" if title else "") + text, file=sys.stderr)


def _probe(spec) -> list[dict]:
    from probekit.probe.experiment import run_probe, seed_spread

    result = run_probe(spec)
    columns = [
        "model",
        "task",
        "hook",
        "rank",
        *(["seed"] if spec.seeds > 1 else []),
        "accuracy",
        "ci_low",
        "ci_high",
        "accuracy_pos",
        "accuracy_neg",
        "majority",
        *(["control_accuracy", "control_seen", "selectivity"] if spec.controls else []),
        *(["compression", *(["control_compression"] if spec.controls else [])] if spec.mdl else []),
        "n",
    ]
    _show(result.table, columns)
    if spec.seeds > 1:
        print("\n" + seed_spread(result.table).to_string(index=False), file=sys.stderr)
    return result.records()


def _depth(spec) -> list[dict]:
    from probekit.probe.experiment import run_depth

    result = run_depth(spec)
    _show(
        result.table,
        ["model", "probe", "layer", "distance", "n", "accuracy", "ci_low", "ci_high", "accuracy_neg", "train_prior"],
        "nece accuracy by layer and distance (accuracy_neg: on nece = false; train_prior: share of nece = true)",
    )
    return result.records(analysis="depth")


def _mistakes(spec) -> list[dict]:
    from probekit.probe.experiment import run_mistakes

    result = run_mistakes(spec)
    counts = next(iter(result.analyses.values())).counts
    print(
        f"\nsolutions: {counts['solutions']} ({counts['correct']} correct, {counts['wrong']} wrong); first errors "
        f"probed: {counts['first_error_used']}; skipped: "
        + (", ".join(f"{k}={v}" for k, v in counts["skipped"].items() if v) or "none"),
        file=sys.stderr,
    )
    cols = ["model", "task", "set", "group", "true_label", "n", "p_pred_true", "accuracy", "ci_low", "ci_high"]
    _show(result.table("unnecessary"), cols, "nece probe at the end of the question (p_pred_true = P(probe says nece))")
    _show(result.table("first_error"), cols, "can_next / nece_next probes (accuracy = P(probe = true label))")
    return result.records()
