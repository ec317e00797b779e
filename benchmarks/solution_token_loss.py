"""Where a checkpoint's solution loss sits: per-token loss on reference solutions, by the token's role.

    python benchmarks/solution_token_loss.py CKPT [--op 3] [--n 100] [--seed 5] [--json]

Teacher-forced on test-split reference solutions of the checkpoint's own family (``training_family``). Every
solution token gets a role from the solution grammar ``Define NAME as S; so S = EXPR [= VALUES] [= RESULT].``:

- ``define``, ``name_first`` (the first word of the parameter a sentence defines: which parameter comes next),
  ``name_rest`` (the rest of its name), ``new_symbol`` (the fresh letter: a uniform choice among the unused ones,
  so about log(52 - k) nats are irreducible; greedy decoding needs the used letters ranked below the unused);
- in the expression after ``S =``: ``expr_symbol`` (which earlier symbol is an operand), ``expr_number`` (a number
  read from the problem: the value a statement gives, or the constant in ``7 * f``), ``expr_other``;
- ``operand_value`` (a symbol's value written out, copied from earlier in the solution), ``result`` (the last
  number of a sentence with a computation: arithmetic mod 23, or a copied value for ``S = T = v``);
- ``other`` (``;``, ``so``, ``=``, operators, ``.``).

Prints mean loss (nats) and top-1 accuracy per role, overall and by sentence (0, 1, 2, 3+). A greedy solution is
right only if every token is top-1, so the roles with the lowest top-1 are what keeps full-solution accuracy down.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from collections import defaultdict

import torch

from probekit.checkpoint import load_checkpoint, training_family
from probekit.evaluate.sets import EvalSet, draw_set
from probekit.igsm.render import prompt_text

LETTERS = {"▁" + c for c in string.ascii_letters}


def roles(words: list[str]) -> list[tuple[str, int]]:
    """``(role, sentence index)`` for each word-level token of a reference solution (see the module docstring)."""
    out, sentence, state, segment = [], 0, "define", 0
    for k, word in enumerate(words):
        if word == "▁Define":
            state, role = "name", "define"
        elif state == "name" and word == "▁as":
            state, role = "symbol", "other"
        elif state == "name":
            role = "name_first" if words[k - 1] == "▁Define" else "name_rest"
        elif state == "symbol":
            state, role = "after_symbol", "new_symbol"
        elif word == "▁=" and state in ("after_symbol", "expr"):
            state, segment, role = "expr", segment + 1, "other"
        elif state == "expr" and word not in (".", ";"):
            last = k + 1 < len(words) and words[k + 1] == "." and segment >= 2
            if last:
                role = "result"
            elif segment == 1:
                role = (
                    "expr_symbol" if word in LETTERS else "expr_number" if word.strip("▁").isdigit() else "expr_other"
                )
            else:
                role = "operand_value" if word.strip("▁").isdigit() else "other"
        else:
            role = "other"
        out.append((role, sentence))
        if word == ".":
            sentence, state, segment = sentence + 1, "define", 0
    return out


def token_loss(checkpoint: str, op: int, n: int, seed: int) -> list[dict]:
    """Rows ``{role, sentence, n, loss, top1}`` (sentence ``"all"`` pools them) on ``n`` problems of ``op``."""
    model, tok, provenance = load_checkpoint(checkpoint)
    model.eval()
    preset, fmt = training_family(provenance)
    sums: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0, 0])
    for problem, solution in draw_set(EvalSet(preset, op=op, format=fmt, n=n, seed=seed)):
        ids = tok.encode_example(prompt_text(problem, fmt), solution, problem.answer)
        start = ids.index(tok.special("SOLUTION")) + 1  # [PROBLEM] prompt [SOLUTION] solution [ANSWER] ...
        sol = ids[start : ids.index(tok.special("ANSWER"))]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
        for k, (role, sentence) in enumerate(roles([tok.id_to_token(t) for t in sol])):
            row = logp[start + k - 1]
            nll, top1 = -row[sol[k]].item(), int(row.argmax()) == sol[k]
            for key in ((role, "all"), (role, str(min(sentence, 3)))):
                cell = sums[key]
                cell[0], cell[1], cell[2] = cell[0] + nll, cell[1] + 1, cell[2] + top1
    return [
        {"role": role, "sentence": sentence, "n": c, "loss": s / c, "top1": t / c}
        for (role, sentence), (s, c, t) in sorted(sums.items())
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--op", type=int, default=3)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="rows as JSON on stdout")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = token_loss(args.checkpoint, args.op, args.n, args.seed)
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{args.checkpoint}: op = {args.op}, {args.n} reference solutions", file=sys.stderr)
    print("| role | sentence | tokens | loss (nats) | top-1 |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['role']} | {r['sentence']} | {r['n']} | {r['loss']:.3f} | {r['top1']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
