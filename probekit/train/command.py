"""``probekit train CONFIG.yaml [section.key=value ...] [--resume | --resume-from DIR] [--init-from DIR]``.

:func:`register` only uses argparse (``probekit --help`` stays fast); :func:`run` parses the options into a
:class:`~probekit.train.job.TrainRun` and calls :func:`~probekit.train.job.run_training` (torch loads then).
One command from a CPU to many GPUs: ``torchrun --nproc_per_node 8 -m probekit train CONFIG.yaml`` (or the
``probekit`` script under ``torchrun``); RANK / WORLD_SIZE / LOCAL_RANK come from the environment.
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "pretrain a GPT2 / LLaMA model on fresh iGSM problems (or packed shards)"
DESCRIPTION = """\
Train as CONFIG.yaml says (see experiments/train/), with section.key=value overrides, e.g.
  probekit train experiments/train/cpu-tiny.yaml schedule.steps=200 run.out=out/tiny
  torchrun --nproc_per_node 8 -m probekit train experiments/train/med-gpt2-12-12.yaml
Sections and keys: model (name, arch, n_layer, n_head, head_dim, rope_theta, tie_embeddings, init_from,
grow_after, seed), data (source, preset, max_op, max_edge, format, seed, n_problems, resample, resample_power, packing,
unpack, shards, shuffle, context, batch_size, micro_batch_size, workers, prefetch, length_check_samples,
max_drop_fraction), optim (lr, betas, eps, weight_decay, decay_embeddings, grad_clip, fused, loss),
schedule (steps, warmup_steps, min_lr_ratio, decay, decay_fraction, rewarm_at), run (out, device, threads, dtype,
compile, attention, tf32, seed, log_every, checkpoint_every, save_final, keep_checkpoints, eval_every, eval_problems,
stop_at_step, peak_tflops, tensorboard, progress). Writes OUT/log.jsonl (with run.eval_every: the learning curve's
full-solution accuracy by op), OUT/checkpoints/step_NNNNNN/ (HF folder + trainer_state.pt) and
OUT/checkpoints/latest."""


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command to an ``argparse`` sub-parsers object (sets ``func=run``)."""
    p = subparsers.add_parser(
        "train", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("config", help="training config (YAML)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides such as optim.lr=3e-3 data.max_op=4")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue exactly from OUT/checkpoints/latest (starts fresh when there is none)",
    )
    p.add_argument(
        "--resume-from",
        metavar="DIR",
        help="continue exactly from the checkpoint folder DIR (with its trainer_state.pt, e.g. a shipped "
        "checkpoint) into OUT; once OUT holds checkpoints, the same as --resume",
    )
    p.add_argument(
        "--init-from",
        metavar="DIR",
        help="start from the weights of an HF checkpoint folder (fine-tuning; same as model.init_from)",
    )
    p.add_argument("--out", metavar="DIR", help="run folder (same as run.out=DIR)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (same as run.progress=false)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout at the end")
    p.set_defaults(func=train_command)
    return p


def build_spec(args):
    """The :class:`~probekit.train.job.TrainRun` of parsed ``probekit train`` arguments."""
    from probekit.train.job import TrainRun

    return TrainRun(
        args.config,
        list(args.overrides or []),
        out=getattr(args, "out", None),
        init_from=getattr(args, "init_from", None),
        resume=bool(getattr(args, "resume", False)),
        resume_from=getattr(args, "resume_from", None),
        progress=not getattr(args, "quiet", False),
    )


def train_command(args) -> int:
    """Run ``probekit train``; returns the exit status (2: bad config, 1: failed run)."""
    from probekit.train.config import ConfigError
    from probekit.train.job import run_training

    spec = build_spec(args)
    try:
        spec.load()
    except ConfigError as err:
        print(f"probekit train: config error: {err}", file=sys.stderr)
        return 2
    try:
        from probekit.train.loop import OutOfMemory
    except ImportError as err:  # torch / transformers missing
        print(
            f"probekit train: needs torch and transformers (pip install 'probekit-igsm[train]'): {err}", file=sys.stderr
        )
        return 1
    try:
        result = run_training(spec)
    except ConfigError as err:
        print(f"probekit train: config error: {err}", file=sys.stderr)
        return 2
    except OutOfMemory as err:
        print(f"probekit train: {err}", file=sys.stderr)
        return 1
    if getattr(args, "json", False):
        print(json.dumps(result.summary()))
    return 0
