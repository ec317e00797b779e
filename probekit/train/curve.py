"""Learning curves: full-solution accuracy by op, measured during training (``run.eval_every``).

Every evaluation judges greedy solutions of the same fresh test-split problems (``run.eval_problems`` per op,
op 2..max_op of the training family; op 1 only when max_op is 1, since every op = 1 test problem asks about
an entity the text never mentions) exactly as ``probekit eval`` does: the same generation budget and the
checker, a solution counting only when the whole chain of thought is accepted and the emitted answer is
right. The log gets one ``{"event": "eval", ...}`` record per evaluation (:meth:`CurveEval.record`).
:func:`learning_curve` reads the points of a run back from its ``log.jsonl`` records (the sweep stores them with
the run's row; ``probekit figures`` draws them as ``learning_curves``).
"""

from __future__ import annotations

import json
import time

from probekit.evaluate.generation import ModelGenerator
from probekit.evaluate.judge import judge
from probekit.evaluate.metrics import wilson_interval
from probekit.evaluate.sets import EvalSet, draw_set, generation_budget
from probekit.igsm.presets import resolve_preset
from probekit.igsm.render import prompt_text
from probekit.tokenizer import IGSMTokenizer

EVAL_SEED = 0
LOSS_KEYS = ("step", "tokens", "problems", "train_seconds", "loss", "solution_loss")
EVAL_KEYS = ("step", "tokens", "problems", "train_seconds", "accuracy", "ci_low", "ci_high", "n", "accuracy_by_op")


def curve_ops(max_op: int) -> list[int]:
    """The ops a learning curve evaluates: 2..max_op (``[1]`` when max_op is 1)."""
    return list(range(2, max_op + 1)) or [1]


class CurveEval:
    """Judge a model on ``n`` test-split problems per op of ``preset`` (drawn once, at construction)."""

    def __init__(self, preset: str, format: str, n: int, tokenizer: IGSMTokenizer, batch_size: int = 64):
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.sets = [
            EvalSet(preset, op=op, format=format, seed=EVAL_SEED, n=n)
            for op in curve_ops(resolve_preset(preset).max_op)
        ]
        self.drawn = [draw_set(s) for s in self.sets]

    def record(self, model) -> dict:
        """``{"accuracy", "ci_low", "ci_high", "n", "accuracy_by_op": {op: accuracy}, "eval_seconds"}``."""
        start = time.perf_counter()
        training = model.training
        model.eval()
        generate = ModelGenerator(model, self.tokenizer, batch_size=self.batch_size, progress=False)
        by_op, correct, total = {}, 0, 0
        try:
            for eval_set, drawn in zip(self.sets, self.drawn):
                prompts = [prompt_text(p, eval_set.format) for p, _ in drawn]
                completions = generate(prompts, max_new_tokens=generation_budget(eval_set, drawn))
                right = sum(judge(p, c.solution, c.answer)["correct"] for (p, _), c in zip(drawn, completions))
                by_op[str(eval_set.op)] = right / len(drawn)
                correct, total = correct + right, total + len(drawn)
        finally:
            model.train(training)
        low, high = wilson_interval(correct, total)
        return {
            "accuracy": correct / total,
            "ci_low": low,
            "ci_high": high,
            "n": total,
            "accuracy_by_op": by_op,
            "eval_seconds": time.perf_counter() - start,
        }


def run_summary(records: list[dict]) -> dict:
    """One row for a training run from its ``log.jsonl`` records: the last loss record's ``step``, ``tokens``,
    ``loss``, ``solution_loss``, ``tokens_per_s``, ``mfu``, ``elapsed_s``, ``train_seconds``; the last
    evaluation's ``curve_accuracy`` and ``curve_accuracy_by_op`` (JSON; None without ``run.eval_every``); and
    the whole ``curve`` (JSON, :func:`learning_curve`)."""
    steps = [r for r in records if "loss" in r]
    last = steps[-1] if steps else {}
    evals = [r for r in records if r.get("event") == "eval"]
    keys = ("step", "tokens", "loss", "solution_loss", "tokens_per_s", "mfu", "elapsed_s", "train_seconds")
    return {
        **{k: last.get(k) for k in keys},
        "curve_accuracy": evals[-1]["accuracy"] if evals else None,
        "curve_accuracy_by_op": json.dumps(evals[-1]["accuracy_by_op"]) if evals else None,
        "curve": json.dumps(learning_curve(records)),
    }


def learning_curve(records: list[dict]) -> list[dict]:
    """The points of a run's curve from its ``log.jsonl`` records, in log order: the loss records
    (``LOSS_KEYS``) and the evaluation records (``EVAL_KEYS``, with ``"event": "eval"``)."""
    points = []
    for r in records:
        if r.get("event") == "eval":
            points.append({"event": "eval", **{k: r.get(k) for k in EVAL_KEYS}})
        elif "loss" in r:
            points.append({k: r.get(k) for k in LOSS_KEYS})
    return points


SHIFTED_KEYS = ("step", "tokens", "train_seconds")


def position_after(position: dict, parent: dict | None) -> dict:
    """A training position (``step``, ``tokens``, ``train_seconds``) moved past ``parent``'s, the position of the
    checkpoint its leg started from (None: unchanged). A value either side lacks counts as 0; one ``position``
    lacks stays missing."""
    if not parent:
        return dict(position)
    return {k: (v + (parent.get(k) or 0) if v is not None else None) for k, v in position.items()}


def on_parent_axis(records: list[dict], parent: dict | None = None) -> list[dict]:
    """The log ``records`` with the loss and evaluation records of every ``--init-from`` leg moved onto its
    parent's axis: their ``step``, ``tokens`` and ``train_seconds`` past the position of the checkpoint the leg
    started from, which its start record carries (``init_from_position``, on the axis of the whole run that made
    that checkpoint). ``parent`` (:func:`probekit.train.plan.training_position` of that folder, or a chain of them
    added with :func:`position_after`) stands for it in the first leg, for logs written before it was recorded or
    whose parent did not record its own. A resumed leg keeps its shift (a log that begins with a resumed leg takes
    ``parent``, else the position its start record carries); a fresh start resets it. Other records are returned
    unchanged."""

    def shift_to(position: dict | None) -> dict:
        return {k: position.get(k) or 0 for k in SHIFTED_KEYS} if position else {}

    shift: dict = {}
    out = []
    for r in records:
        if r.get("event") == "start":
            recorded = r.get("init_from_position")
            if r.get("resumed_from") is None:
                shift = shift_to((parent or recorded) if r.get("init_from") else None)
                parent = None  # an explicit parent stands for the first leg only
            elif not shift:
                shift = shift_to(parent or recorded)
                parent = None
        elif shift and ("loss" in r or r.get("event") == "eval"):
            r = {**r, **{k: r[k] + shift[k] for k in SHIFTED_KEYS if r.get(k) is not None}}
        out.append(r)
    return out
