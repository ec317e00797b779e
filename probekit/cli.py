"""The ``probekit`` command. Each subcommand parses its options and calls one library function.

Convention: a command's module has ``register(subparsers)``, which adds it, and a handler ``<name>_command(args)``
returning the exit status (``generate_command``, ``eval_command``, ``probe_command``, ``run_command`` ...).

Results go to stdout (``--json``: machine-readable), progress bars and logs to stderr. Heavy modules are
imported inside the subcommands so that ``probekit --help`` starts fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter

from probekit.igsm.presets import FAMILY_HELP, resolve_preset


def _progress(total: int | None, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="rec", file=sys.stderr, disable=quiet, dynamic_ncols=True)


def _print_summary(title: str, rows: dict, as_json: bool, stdout_free: bool) -> None:
    """A summary: JSON on stdout when asked and stdout is not carrying records, else a table on stderr."""
    if as_json:
        print(json.dumps(rows), file=sys.stdout if stdout_free else sys.stderr)
        return
    print(f"\n{title}", file=sys.stderr)
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        print(f"  {key:<{width}}  {value}", file=sys.stderr)


# ---------------------------------------------------------------------------- generate
def _family(name: str) -> str:
    """``--preset``: a family the generator can draw (:func:`~probekit.igsm.presets.resolve_preset`)."""
    try:
        return resolve_preset(name).name
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def generate_command(args) -> int:
    from probekit.igsm.generate import GenerationConfig
    from probekit.igsm.jobs import generate_records
    from probekit.records import atomic_output, dumps

    config = GenerationConfig(args.preset, args.op, args.format, args.reask, args.split, args.seed)
    ops: Counter = Counter()
    summary = {"out": args.out or "-", "n": args.n}
    start = time.perf_counter()
    with atomic_output(args.out) as out, _progress(args.n, "generate", args.quiet) as bar:

        def written():
            for record in generate_records(config, args.n, args.workers, args.start):
                out.write(dumps(record) + "\n")
                ops[record["op"]] += 1
                bar.update()
                yield record

        if args.tokens:
            from probekit.shards import write_shards
            from probekit.tokenizer import default_tokenizer

            meta = write_shards(written(), default_tokenizer(), args.tokens, args.context, overwrite=args.overwrite)
            keys = ("n_shards", "n_windows", "n_examples", "n_dropped_too_long", "n_tail_tokens_dropped")
            summary["tokens"] = {"dir": args.tokens, **{k: meta[k] for k in keys}}
        else:
            for _ in written():
                pass
    elapsed = time.perf_counter() - start
    summary["seconds"] = round(elapsed, 3)
    summary["problems_per_second"] = round(args.n / elapsed, 1) if elapsed else None
    summary["op_histogram"] = dict(sorted(ops.items()))
    _print_summary("generated", summary, args.json, stdout_free=args.out is not None)
    return 0


# ---------------------------------------------------------------------------- check / labels
def _run_records(args, job, failed, on_result=None) -> int:
    """Apply ``job`` to every record of ``args.input`` and write one result line per input line.

    A line that is not a record, and a record on which ``job`` raises (whatever the cause), becomes
    ``failed(message)``: one bad record never costs the file.
    """
    from probekit.records import atomic_output, dumps, read_jsonl

    try:
        lines = list(read_jsonl(args.input))
    except OSError as err:
        print(f"probekit: cannot read {args.input}: {err.strerror or err}", file=sys.stderr)
        return 2
    if not lines:
        print(f"probekit: {args.input} is empty: nothing to do", file=sys.stderr)
    with atomic_output(args.out) as out, _progress(len(lines), args.command, args.quiet) as bar:
        for line in lines:
            if line.record is None:
                result = failed(f"line {line.number}: {line.error}")
            else:
                try:
                    result = job(line.record)
                except Exception as err:  # noqa: BLE001 - a per-record error, whatever the cause
                    result = failed(f"line {line.number}: {type(err).__name__}: {err}")
            if on_result:
                on_result(result)
            out.write(dumps(result) + "\n")
            bar.update()
    return 0


def check_command(args) -> int:
    from probekit.igsm.jobs import CheckSummary, check_record, unparseable

    summary = CheckSummary()
    status = _run_records(args, check_record, unparseable, summary.add)
    if status == 0:
        _print_summary("check", summary.to_dict(), args.json, stdout_free=args.out is not None)
    return status


def labels_command(args) -> int:
    from probekit.igsm.jobs import LabelsSummary, labels_record

    summary = LabelsSummary()
    status = _run_records(args, labels_record, lambda message: {"error": message}, summary.add)
    if status == 0:
        _print_summary("labels", summary.to_dict(), args.json, stdout_free=args.out is not None)
    return status


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probekit", description="iGSM problems, checker, probe labels, model training, evaluation and V-probes."
    )
    from probekit import __version__

    parser.add_argument("--version", action="version", version=f"probekit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p):
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")

    g = sub.add_parser("generate", help="generate iGSM problems with reference solutions (JSONL)")
    g.add_argument(
        "--preset",
        type=_family,
        default="med",
        help=f"{FAMILY_HELP} (med: op <= 15, ip <= 20; hard: op <= 21, ip <= 28; default med)",
    )
    g.add_argument(
        "--op",
        type=int,
        help="force the number of operations (evaluation sets 'op = K'); with --reask, the op of the problem "
        "before its question is replaced (the paper's reask sets), after which op is recounted",
    )
    g.add_argument("--format", choices=["pq", "qp"], default="pq", help="problem then question, or the reverse")
    g.add_argument("--reask", action="store_true", help="re-ask a parameter drawn uniformly from the problem")
    g.add_argument("--split", choices=["train", "test", "all"], default="train", help="template-hash split")
    g.add_argument("--n", type=int, required=True, help="number of problems")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--start", type=int, default=0, help="first index (records are a function of seed and index)")
    g.add_argument("--out", help="output JSONL file (default: stdout); written atomically")
    g.add_argument("--workers", type=int, default=1, help="worker processes (output is identical for any value)")
    g.add_argument("--tokens", metavar="DIR", help="also write packed uint16 training shards to DIR")
    g.add_argument("--context", type=int, default=768, help="window length of the training shards")
    g.add_argument("--overwrite", action="store_true", help="replace shards already in the --tokens directory")
    common(g)
    g.set_defaults(func=generate_command)

    c = sub.add_parser("check", help="judge solutions with the full-solution checker")
    c.add_argument("--input", required=True, help="JSONL with 'problem', 'solution' and optional 'categories'")
    c.add_argument("--out", help="verdicts JSONL, one line per input line (default: stdout)")
    common(c)
    c.set_defaults(func=check_command)

    lab = sub.add_parser("labels", help="compute the six probe labels along each solution")
    lab.add_argument("--input", required=True, help="JSONL with 'problem', optional 'solution' and 'categories'")
    lab.add_argument("--out", help="labels JSONL, one line per input line (default: stdout)")
    common(lab)
    lab.set_defaults(func=labels_command)

    from probekit.causal.intervene_command import register as register_intervene
    from probekit.causal.patch_command import register as register_patch
    from probekit.evaluate.command import register as register_eval
    from probekit.evaluate.compare_command import register as register_compare
    from probekit.figures.command import register as register_figures
    from probekit.igsm.pairs_command import register as register_pairs
    from probekit.modelcheck import register as register_inspect
    from probekit.probe.command import register as register_probe
    from probekit.sweep.command import register as register_run
    from probekit.train.command import register as register_train

    register_train(sub)
    register_eval(sub)
    register_compare(sub)
    register_probe(sub)
    register_run(sub)
    register_figures(sub)
    register_inspect(sub)
    register_pairs(sub)
    register_patch(sub)
    register_intervene(sub)
    return parser


FILE_OPTIONS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "generate": ({"--out": "out", "--tokens": "tokens"}, {}),
    "check": ({"--out": "out"}, {"--input": "input"}),
    "labels": ({"--out": "out"}, {"--input": "input"}),
    "pairs": ({"--out": "out"}, {"--input": "input"}),
    "patch": ({"--out": "out"}, {"CKPT": "checkpoint", "--pairs": "pairs", "--problems": "problems"}),
    "intervene": ({"--out": "out"}, {"CKPT": "checkpoint"}),
    "eval": ({"--out": "out"}, {"CKPT": "checkpoint"}),
    "probe": ({"--out": "out"}, {"CKPT": "ckpt", "--records": "records"}),
    "figures": ({"--out": "out"}, {"EXPERIMENT.yaml": "experiment", "--results": "results"}),
    "run": ({"--results": "results"}, {"CONFIG.yaml": "config"}),
}
"""Per command: its output options and its input arguments (option -> attribute), checked in one place."""


def parse_args(parser, argv: list[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args``, except that ``probekit train``'s ``section.key=value`` overrides may also follow
    its flags (``probekit train base.yaml --quiet schedule.steps=4``)."""
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "train" and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*(args.overrides or []), *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def validate(parser, args) -> None:
    """Checks argparse cannot express (errors exit through ``parser.error``): among them, no output may be one of
    the command's inputs (:func:`probekit.records.check_outputs`), and ``--out -`` means stdout."""
    from probekit.records import OutputOverInput, check_outputs

    outputs, inputs = FILE_OPTIONS.get(args.command, ({}, {}))
    if getattr(args, "out", None) == "-" and args.command in ("generate", "check", "labels"):
        args.out = None
    try:
        check_outputs(
            {k: getattr(args, v, None) for k, v in outputs.items()},
            {k: getattr(args, v, None) for k, v in inputs.items()},
        )
    except OutputOverInput as err:
        parser.error(str(err))
    device = getattr(args, "device", None)
    if isinstance(device, str) and device.startswith("cuda"):
        from probekit.checkpoint import select_device

        try:
            select_device(device)
        except ValueError as err:
            parser.error(f"--device {device}: {err}")
    if args.command == "generate":
        if args.n < 0:
            parser.error("--n must be >= 0")
        if args.workers < 1:
            parser.error("--workers must be >= 1")
        if args.op is not None and not 1 <= args.op <= 52:
            parser.error("--op must be between 1 and 52 (one fresh letter per step)")
        if args.tokens and args.context < 2:
            parser.error("--context must be >= 2")


def main(argv: list[str] | None = None) -> int:
    """Run a command; errors end in one line on stderr. SIGTERM (``kill``, a job scheduler, torchrun stopping
    its workers) is handled like Ctrl-C: the command's cleanup runs (temporaries are deleted) and it exits 143
    with ``probekit: terminated``. A second SIGTERM, and SIGTERM in a forked worker process, kill at once; so
    does SIGTERM in a torchrun worker of rank > 0, which writes no files (only rank 0 writes checkpoints), so
    that stopping a DDP run never waits on a rank stuck in a collective whose peers are gone."""
    import os
    import signal

    parser = build_parser()
    args = parse_args(parser, argv)
    validate(parser, args)
    main_pid = os.getpid()
    terminated = []

    def on_sigterm(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
        if os.getpid() != main_pid:  # a forked worker (multiprocessing.Pool.terminate): die as by default
            os.kill(os.getpid(), signal.SIGTERM)
            return
        terminated.append(signum)
        raise KeyboardInterrupt

    previous = None
    writer = os.environ.get("RANK", "0") in ("", "0")  # torchrun sets RANK; ranks > 0 write no files
    try:  # only where nobody else handles SIGTERM, and only in the main thread (signal refuses others)
        if writer and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:
        previous = None
    try:
        return args.func(args)
    except BrokenPipeError:  # stdout closed early (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        if terminated:
            print("probekit: terminated", file=sys.stderr)
            return 143
        print("probekit: interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError) as err:
        if args.debug:
            raise
        # a spec setting out of range names the option that set it (SettingError.flag_message)
        print(f"probekit {args.command}: error: {getattr(err, 'flag_message', err)}", file=sys.stderr)
        # bad input exits 2 as argparse does: such a setting, or a path naming no checkpoint (usage_error)
        return 2 if getattr(err, "usage_error", False) else 1
    except Exception as err:  # noqa: BLE001 - an unexpected error: one line, the traceback on request
        if args.debug:
            raise
        print(
            f"probekit {args.command}: unexpected error: {type(err).__name__}: {err} "
            "(rerun with `probekit --debug ...` for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
