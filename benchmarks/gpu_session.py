"""One device call: time a training config, train it for the seconds left, judge it, bring the checkpoint back.

    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_session.py          # the device tool's run(..., timeout_s=600)
    python benchmarks/gpu_session.py --config experiments/train/cpu-tiny.yaml --budget 150 --eval-n 4 \\
        --eval-sets 1,2 --out /tmp/gpu-session                     # the same plumbing on a CPU, in minutes

A lent GPU gives one command at most 10 minutes and a session 15 minutes of device time, and brings back at most
8 files of 16 MiB. Inside ``--budget`` seconds (default 540) this script:

1. times ``--timing-steps`` steps of ``--config`` (default ``experiments/train/gpu-fast-med.yaml``; the compile
   this pays is cached for step 2) and reads the tokens/s of the steps after the first third;
2. sets ``schedule.steps`` = (seconds left - the eval reserve - the start-up the timing run paid) x tokens/s /
   tokens per step, with a 5% warm-up, and trains (``python -m probekit train``);
3. evaluates the final checkpoint (``probekit eval --sets --eval-sets --n --eval-n``);
4. writes under ``--out`` (default ``$OUT``): ``session.log`` (every step's command, times and the tail of its
   output), ``timing.jsonl`` and ``log.jsonl`` (the two runs' logs), ``eval.json``, and the checkpoint folder
   without its trainer state as ``checkpoint.tar`` in 15 MiB parts, ``checkpoint.tar.part0`` ...; join them here
   with ``cat checkpoint.tar.part* | tar -x -C models/NAME``.

It stops with a message when a step fails or the parts would not come back (more than 8 files in all). Extra
``KEY=VALUE`` arguments override the config in both runs, e.g. ``data.max_op=4 data.max_edge=12``.

It uses the standard library only and reaches probekit through ``python -m probekit`` child processes: on the
device the working tree is copied but not installed, and ``python3 benchmarks/gpu_session.py`` puts
``benchmarks/``, not the repository root, on its own import path.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

PART_BYTES = 15 * 2**20
MAX_FILES = 8  # the device brings back at most 8 files


class Session:
    """The budget clock and ``session.log``."""

    def __init__(self, out: Path, budget: float):
        self.out, self.budget, self.started = out, budget, time.monotonic()
        self.log = (out / "session.log").open("a")

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.started)

    def say(self, message: str) -> None:
        line = f"[{time.monotonic() - self.started:6.0f} s] {message}"
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def run(self, what: str, command: list[str]) -> tuple[str, float]:
        """Run ``command``; its output's tail goes to the log; a failure stops the session."""
        self.say(f"{what}: {' '.join(command)}")
        begun = time.monotonic()
        proc = subprocess.run(command, capture_output=True, text=True)
        seconds = time.monotonic() - begun
        tail = (proc.stdout + proc.stderr)[-3000:]
        self.log.write(tail + "\n")
        self.say(f"{what}: exit {proc.returncode} after {seconds:.0f} s")
        if proc.returncode != 0:
            print(tail, file=sys.stderr)
            raise SystemExit(f"gpu_session: {what} failed (exit {proc.returncode}); see {self.out / 'session.log'}")
        return proc.stdout, seconds


def read_jsonl(path: Path) -> list[dict]:
    # not probekit.train.metrics.read_log / throughput: this script imports no probekit (see below)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def measured_speed(log: list[dict], skip: int) -> tuple[float, int]:
    """(tokens/s over the loss windows after step ``skip``, tokens per step) of a training log."""
    start = next(r for r in log if r.get("event") == "start")
    windows = [r for r in log if "loss" in r and "event" not in r and r["step"] > skip]
    if not windows:
        raise SystemExit("gpu_session: the timing run logged no step after its warm-up; raise --timing-steps")
    seconds = sum(r["window_seconds"] for r in windows)
    tokens = sum(r["window_steps"] for r in windows) * start["tokens_per_step"]
    return tokens / seconds, start["tokens_per_step"]


def pack_checkpoint(folder: Path, out: Path) -> list[Path]:
    """``folder`` without its trainer state as a tar in ``PART_BYTES`` parts under ``out``."""
    whole = out / "checkpoint.tar"
    with tarfile.open(whole, "w") as tar:
        for path in sorted(folder.iterdir()):
            if path.name != "trainer_state.pt":
                tar.add(path, arcname=path.name)
    parts = []
    with whole.open("rb") as src:
        while chunk := src.read(PART_BYTES):
            part = out / f"checkpoint.tar.part{len(parts)}"
            part.write_bytes(chunk)
            parts.append(part)
    whole.unlink()
    return parts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="experiments/train/gpu-fast-med.yaml")
    ap.add_argument("--budget", type=float, default=540, help="seconds for the whole session (default 540)")
    ap.add_argument("--timing-steps", type=int, default=40, help="steps of the timing run (default 40)")
    ap.add_argument("--eval-reserve", type=float, default=120, help="seconds kept for evaluation and packing")
    ap.add_argument("--eval-sets", default="id,ood", help="probekit eval --sets (default id,ood)")
    ap.add_argument("--eval-n", type=int, default=200, help="problems per evaluation set (default 200)")
    ap.add_argument("--out", default=os.environ.get("OUT"), help="where the results go (default: $OUT)")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for both runs")
    args = ap.parse_args(argv)
    if not args.out:
        ap.error("--out is required when $OUT is not set")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    session = Session(out, args.budget)
    python = [sys.executable, "-m", "probekit"]
    work = Path(tempfile.mkdtemp(prefix="gpu_session."))
    quiet = ["run.progress=false", "run.tensorboard=false"]

    timing = work / "timing"
    warmup = max(1, args.timing_steps // 10)
    _, timing_wall = session.run(
        "timing",
        [
            *python,
            "train",
            args.config,
            *args.overrides,
            *quiet,
            f"schedule.steps={args.timing_steps}",
            f"schedule.warmup_steps={warmup}",
            f"run.out={timing}",
            f"run.log_every={warmup}",
            "run.checkpoint_every=0",
            "run.save_final=false",
            "run.eval_every=0",
        ],
    )
    (out / "timing.jsonl").write_text((timing / "log.jsonl").read_text())
    tokens_per_s, tokens_per_step = measured_speed(read_jsonl(timing / "log.jsonl"), args.timing_steps // 3)
    startup = max(0.0, timing_wall - args.timing_steps * tokens_per_step / tokens_per_s)
    train_seconds = session.left() - args.eval_reserve - startup
    steps = int(train_seconds * tokens_per_s / tokens_per_step)
    session.say(
        f"{tokens_per_s:,.0f} tokens/s, {tokens_per_step:,} tokens per step, start-up {startup:.0f} s: "
        f"{train_seconds:.0f} s of training = {steps} steps"
    )
    if steps < 10 * warmup:
        raise SystemExit(f"gpu_session: only {steps} steps fit the budget; raise --budget or shrink the model")

    run = work / "train"
    session.run(
        "train",
        [
            *python,
            "train",
            args.config,
            *args.overrides,
            *quiet,
            f"schedule.steps={steps}",
            f"schedule.warmup_steps={max(1, steps // 20)}",
            f"run.out={run}",
            "run.checkpoint_every=0",
            "run.eval_every=0",
        ],
    )
    (out / "log.jsonl").write_text((run / "log.jsonl").read_text())
    checkpoint = (run / "checkpoints" / "latest").read_text().strip()
    folder = run / "checkpoints" / checkpoint

    stdout, _ = session.run(
        "eval", [*python, "eval", str(folder), "--sets", args.eval_sets, "--n", str(args.eval_n), "--json", "--quiet"]
    )
    (out / "eval.json").write_text(stdout)

    parts = pack_checkpoint(folder, out)
    files = sorted(p.name for p in out.iterdir())
    session.say(f"{len(files)} files under {out}: {', '.join(files)}; {session.left():.0f} s of the budget left")
    if len(files) > MAX_FILES:
        raise SystemExit(f"gpu_session: {len(files)} files, the device brings back {MAX_FILES}: shrink the model")
    session.say(f"checkpoint {folder.name} in {len(parts)} parts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
