"""Does the model know which parameter comes next? Its own next sentence, read as a nece_next / can_next guess.

    python benchmarks/next_parameter_readout.py CKPT [--n 300] [--seed 0] [--json]

The can_next and nece_next probes ask, at a solution position t (after t reference sentences), whether a
parameter A can be computed next (and is necessary). Here the model answers with its own behaviour instead: at
each position t = 0..T-1 of test-split problems of its own family (``training_family``; the probes' test data,
:func:`probekit.probe.data.split_configs`), it writes its next sentence greedily from the reference prefix, and
the parameter that sentence defines (``Define NAME as``, read by the checker's parser) is its guess. Read as a classifier over every parameter
of the probe pool at that position ("A is next" iff A is the parameter it writes), it is scored on the same labels
as the probes: accuracy, accuracy on positive labels, majority guess.

Prints the share of positions at which the written parameter is the reference's next one, is in the nece_next set
and is in the can_next set, then the readout's scores for both tasks, overall, by t and by op. Compare with the probes'
``acc_pos`` (``probekit probe CKPT --task nece_next ...``): a probe far below the readout on positive labels is a
probe that does not read what the model's output shows it knows.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

import torch

from probekit.checkpoint import load_checkpoint, read_provenance, training_family
from probekit.evaluate.generation import ModelGenerator
from probekit.igsm.check import parse_solution
from probekit.probe.data import ProbeBuilder, problems_from_config, split_configs


def positions(ckpt: str, n: int, seed: int) -> list[dict]:
    """One dict per solution position of ``n`` test-split problems: the sets of the labels and the written name."""
    loaded = load_checkpoint(ckpt, attn_implementation="eager")
    preset, fmt = training_family(read_provenance(ckpt))
    _, test_cfg = split_configs(preset, fmt, seed, None, None, False)
    rows, prefixes = [], []
    for item in problems_from_config(test_cfg, n):
        builder = ProbeBuilder(item, loaded.tokenizer)
        step = builder.labels.steps
        for t in range(builder.n_steps):
            rows.append(
                {
                    "t": t,
                    "op": builder.op,
                    "pool": builder.pool_names,
                    "nece_next": set(step[t]["nece_next"]),
                    "can_next": set(step[t]["can_next"]),
                    "reference_next": set(step[t + 1]["known"]) - set(step[t]["known"]),
                }
            )
            prefixes.append(builder.prefix(builder.position("nece_next", t)))
    generator = ModelGenerator(loaded.model, loaded.tokenizer, batch_size=32, progress=False)
    for row, ids in zip(rows, generator.generate_ids(prefixes, max_new_tokens=24)):
        sentences = parse_solution(loaded.tokenizer.decode(ids))
        row["written"] = sentences[0].name if sentences else None
    return rows


def readout(rows: list[dict], task: str) -> dict:
    """Scores of "A is next iff the model writes A" on the labels of ``task`` over every pool parameter."""
    n = correct = pos = pos_correct = 0
    for row in rows:
        for name in row["pool"]:
            label, guess = name in row[task], name == row["written"]
            n += 1
            correct += label == guess
            pos += label
            pos_correct += label and guess
    return {
        "examples": n,
        "accuracy": correct / n,
        "acc_pos": pos_correct / pos if pos else None,
        "majority": max(pos, n - pos) / n,
    }


def summary(rows: list[dict]) -> dict:
    k = len(rows)
    by_t, by_op = defaultdict(list), defaultdict(list)
    for row in rows:
        by_t[min(row["t"], 3)].append(row)
        by_op[row["op"]].append(row)
    return {
        "positions": k,
        "written_is_reference_next": sum(r["written"] in r["reference_next"] for r in rows) / k,
        "written_in_nece_next": sum(r["written"] in r["nece_next"] for r in rows) / k,
        "written_in_can_next": sum(r["written"] in r["can_next"] for r in rows) / k,
        "no_definition": sum(r["written"] is None for r in rows) / k,
        "mean_nece_next_set": sum(len(r["nece_next"]) for r in rows) / k,
        "mean_pool": sum(len(r["pool"]) for r in rows) / k,
        "readout": {task: readout(rows, task) for task in ("nece_next", "can_next")},
        "nece_next_by_t": {
            ("3+" if t == 3 else str(t)): readout(sub, "nece_next") | {"positions": len(sub)}
            for t, sub in sorted(by_t.items())
        },
        "nece_next_by_op": {
            str(op): readout(sub, "nece_next") | {"positions": len(sub)} for op, sub in sorted(by_op.items())
        },
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--n", type=int, default=300, help="test-split problems (default 300, as the probes' --n-test)")
    ap.add_argument("--seed", type=int, default=0, help="probe data seed (the test split uses seed + 1)")
    ap.add_argument("--json", action="store_true", help="the summary as JSON on stdout")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    result = summary(positions(args.checkpoint, args.n, args.seed))
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(
        f"{result['positions']} positions (mean {result['mean_pool']:.1f} pool parameters, nece_next set of "
        f"{result['mean_nece_next_set']:.2f})"
    )
    for key in ("written_is_reference_next", "written_in_nece_next", "written_in_can_next", "no_definition"):
        print(f"  {key:28s} {result[key]:.3f}")
    for task, r in result["readout"].items():
        print(
            f"readout {task:9s} accuracy {r['accuracy']:.3f} (majority {r['majority']:.3f}), "
            f"on positive labels {r['acc_pos']:.3f}, {r['examples']} examples"
        )
    for key, r in [
        *(("t=" + t, r) for t, r in result["nece_next_by_t"].items()),
        *(("op=" + op, r) for op, r in result["nece_next_by_op"].items()),
    ]:
        print(
            f"  nece_next {key:5s} accuracy {r['accuracy']:.3f} (majority {r['majority']:.3f}), positives "
            f"{r['acc_pos'] if r['acc_pos'] is None else round(r['acc_pos'], 3)}, {r['positions']} positions"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
