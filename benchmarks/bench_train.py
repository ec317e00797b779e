"""Training throughput: tokens/s, MFU and the fraction of step time spent waiting for data.

Runs the real training loop (probekit.train.loop.train: fresh problems from generator workers, the
background loader, autocast / compile on CUDA) for ``--warmup + --steps`` steps of one process, without
checkpoints, and reports the steps after the warm-up (which holds torch.compile's compilation).

    python benchmarks/bench_train.py                     # CUDA: gpt2-12-12, context 768, micro-batch 32
                                                         # CPU:  gpt2-4-2, context 256, micro-batch 8
    python benchmarks/bench_train.py --model gpt2-8-15 --context 768 --micro-batch 64 --json
    python benchmarks/bench_train.py --micro-batch 64 model.n_layer=12 model.n_head=4   # gpu-fast-med's model

MFU = flops_per_token * tokens/s / peak, flops_per_token = 6 N + 12 L d T (see probekit/train/flops.py);
the peak is --peak-tflops or the GPU's dense bf16 peak (H100: 989); on CPU MFU is not reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time


def main(argv=None) -> int:
    import torch

    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="gpt2-12-12" if cuda else "gpt2-4-2", help="models/<name>.yaml")
    p.add_argument("--context", type=int, default=768 if cuda else 256)
    p.add_argument("--micro-batch", type=int, default=32 if cuda else 8)
    p.add_argument("--accum", type=int, default=1, help="micro-batches per step")
    p.add_argument("--steps", type=int, default=30 if cuda else 20, help="timed steps")
    p.add_argument("--warmup", type=int, default=10 if cuda else 3, help="untimed steps first (compilation)")
    p.add_argument("--preset", default="med", choices=["med", "hard"])
    p.add_argument(
        "--max-op", type=int, default=None if cuda else 4, help="CPU default 4: short problems for context 256"
    )
    p.add_argument("--max-edge", type=int, default=None if cuda else 12)
    p.add_argument("--workers", type=int, default=None, help="generator processes (default: auto)")
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="more config overrides, e.g. model.n_layer=8")
    args = p.parse_args(argv)

    from probekit.train.config import load_config
    from probekit.train.loop import train
    from probekit.train.metrics import loss_windows, read_log, throughput

    total = args.warmup + args.steps
    with tempfile.TemporaryDirectory(prefix="bench_train.") as out:
        overrides = [
            f"model.name={args.model}",
            f"data.preset={args.preset}",
            f"data.context={args.context}",
            f"data.batch_size={args.micro_batch * args.accum}",
            f"data.micro_batch_size={args.micro_batch}",
            "data.length_check_samples=0",  # throughput only: long problems are dropped and counted
            f"schedule.steps={total}",
            f"schedule.warmup_steps={min(args.warmup, total)}",
            f"run.out={out}",
            f"run.dtype={args.dtype}",
            "run.log_every=1",
            "run.checkpoint_every=0",
            "run.save_final=false",
            "run.progress=false",
            "run.tensorboard=false",
        ]
        if args.max_op is not None:
            overrides.append(f"data.max_op={args.max_op}")
        if args.max_edge is not None:
            overrides.append(f"data.max_edge={args.max_edge}")
        if args.workers is not None:
            overrides.append(f"data.workers={args.workers}")
        if args.compile != "auto":
            overrides.append(f"run.compile={'true' if args.compile == 'on' else 'false'}")
        if args.peak_tflops is not None:
            overrides.append(f"run.peak_tflops={args.peak_tflops}")
        overrides += args.overrides
        started = time.perf_counter()
        train(load_config(None, overrides))
        wall = time.perf_counter() - started
        records = read_log(out)

    start = records[0]
    timed = loss_windows(records, args.warmup)
    seconds = sum(r["window_seconds"] for r in timed)
    wait = sum(r["data_wait_fraction"] * r["window_seconds"] for r in timed)
    tokens_per_s = throughput(timed, start["tokens_per_step"])
    peak = start["peak_tflops"]
    last = timed[-1]
    result = {
        "model": args.model + "".join(f" {o}" for o in args.overrides),
        "n_params": start["n_params"],
        "device": start["device_name"]
        or f"cpu ({platform.processor() or platform.machine()}, {start['torch_threads']} torch thread(s))",
        "dtype": start["dtype"],
        "compile": start["compile"],
        "context": args.context,
        "micro_batch": args.micro_batch,
        "accumulation": args.accum,
        "data_workers": start["data_workers"],
        "timed_steps": len(timed),
        "step_time_s": seconds / len(timed),
        "tokens_per_s": tokens_per_s,
        "flops_per_token": start["flops_per_token"],
        "flops_formula": start["flops_formula"],
        "peak_tflops": peak,
        "mfu": start["flops_per_token"] * tokens_per_s / (peak * 1e12) if peak else None,
        "data_wait_fraction": wait / seconds,
        "problems_dropped_fraction": last["dropped_too_long"] / max(1, last["problems"] + last["dropped_too_long"]),
        "wall_s_including_startup": wall,
        "torch": torch.__version__,
    }
    if args.json:
        print(json.dumps(result))
    else:
        mfu = f"{result['mfu']:.1%}" if result["mfu"] is not None else "n/a (no peak on CPU)"
        print(
            f"{args.model} ({result['n_params'] / 1e6:.1f}M) on {result['device']}, {result['dtype']}"
            f"{', compiled' if result['compile'] else ''}: context {args.context}, micro-batch {args.micro_batch}"
            f" x {args.accum}, {result['data_workers']} data worker(s)",
            file=sys.stderr,
        )
        print(f"  tokens/s            {tokens_per_s:,.0f}", file=sys.stderr)
        print(f"  step time           {result['step_time_s'] * 1000:.1f} ms", file=sys.stderr)
        print(f"  MFU                 {mfu}", file=sys.stderr)
        print(f"  data wait fraction  {result['data_wait_fraction']:.3f}", file=sys.stderr)
        print(f"  flops/token         {result['flops_per_token']:,} (6N + 12 L d T)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
