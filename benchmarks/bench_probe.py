"""V-probe training throughput: examples/s of forward + backward to the rank-r embedding update.

    python benchmarks/bench_probe.py [--models gpt2-tiny,gpt2-4-2] [--device cpu|cuda] [--steps 4]
                                     [--batch-size 32] [--backends hf,bridge] [--packed] [--json]

For each model (random weights of a shipped shape; speed does not depend on the weights) it builds real
iGSM-med probe examples (``can_next``: positions inside the solution, the longest inputs), fits
``VProbe(rank=8, layer=-1)`` for ``--steps`` steps per back-end after one warm-up step, and prints training
examples/s (the median step, standardisation pass excluded; on CPU also per CPU-second of the process,
which is steadier than wall time on a shared machine), plus the rank-0 path's feature extraction
examples/s (one forward, no backward). The back-ends are timed in turns (hf, bridge, hf, bridge, ...) so
that load drift on a shared machine hits both alike. ``--packed`` adds a third turn, ``hf_packed``: the hf
back-end with ``batches="problems"`` (consecutive problems' examples per batch, run as packed rows). On CUDA the default is bf16 autocast; ``--compile``
adds ``torch.compile``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from probekit.igsm.generate import GenerationConfig
from probekit.modeling import build_model, load_model_config
from probekit.probe import hooks, vprobe
from probekit.probe.data import examples_from_config
from probekit.probe.layers import collect_features
from probekit.probe.vprobe import VProbe
from probekit.tokenizer import default_tokenizer


def step_times(probe: VProbe, model, data, steps: int, batch_size: int, seed: int) -> list[tuple[float, float]]:
    """(wall, process CPU) seconds per training step (forward + backward + AdamW) on random batches (with
    ``batches="problems"``: runs of consecutive problems' examples, packed)."""
    rng = np.random.default_rng(seed)
    probe.fit(model, data.select(np.arange(min(len(data), 2 * batch_size))))  # set-up (and 1 warm step)
    features = probe._features_fn()
    opt, _ = probe._optimizer()
    amp = probe._amp_dtype()
    micro = probe._micro()
    packed = probe.batches == "problems"
    order = vprobe._epoch_orders(data.ids, packed=True)(rng) if packed else None
    out = []
    for step in range(steps):
        if order is not None:
            start = step * batch_size % max(1, len(order) - batch_size)
            idx = order[start : start + batch_size]
        else:
            idx = np.sort(rng.choice(len(data), batch_size, replace=False))
            idx = idx[np.argsort(data.lengths[idx], kind="stable")]
        if probe.device_.type == "cuda":
            torch.cuda.synchronize()
        start, cpu = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        for k in range(0, len(idx), micro):
            chunk = idx[k : k + micro]
            with torch.autocast(probe.device_.type, dtype=amp, enabled=amp is not None):
                feats, chunk = probe._chunk_features(features, [data.ids[i] for i in chunk], chunk, packed)
            y = torch.as_tensor(data.labels[chunk], device=probe.device_)
            loss = torch.nn.functional.cross_entropy(probe.params_.logits(feats), y, reduction="sum") / len(idx)
            loss.backward()
        opt.step()
        if probe.device_.type == "cuda":
            torch.cuda.synchronize()
        out.append((time.perf_counter() - start, time.process_time() - cpu))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gpt2-tiny,gpt2-4-2,llama-4-2")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--micro-batch-size", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per back-end")
    parser.add_argument("--backends", default="hf,bridge")
    parser.add_argument("--packed", action="store_true", help="also time hf with batches='problems' (hf_packed)")
    parser.add_argument("--n-problems", type=int, default=60)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tok = default_tokenizer()
    data = examples_from_config(GenerationConfig("med", seed=0), args.n_problems, tasks="can_next", tokenizer=tok)
    backends = [b for b in args.backends.split(",") if b]
    if "bridge" in backends:
        try:
            import transformer_lens.model_bridge  # noqa: F401
        except ImportError:
            backends.remove("bridge")
    results = []
    for name in args.models.split(","):
        model = build_model(load_model_config(name), tok, seed=0).to(args.device).eval()
        turns = [*backends, *(["hf_packed"] if args.packed else [])]
        times: dict[str, list[tuple[float, float]]] = {b: [] for b in turns}
        for r in range(args.rounds):
            for turn in turns:
                backend = turn.removesuffix("_packed")
                probe = VProbe(
                    "can_next",
                    rank=8,
                    layer=-1,
                    steps=1,
                    batch_size=args.batch_size,
                    device=args.device,
                    backend=backend,
                    compile=args.compile,
                    micro_batch_size=args.micro_batch_size,
                    batches="problems" if turn.endswith("_packed") else "examples",
                )
                times[turn] += step_times(probe, model, data, args.steps, args.batch_size, seed=r)
        row = {
            "model": name,
            "device": args.device,
            "batch_size": args.batch_size,
            "mean_tokens": float(data.lengths.mean()),
            "threads": torch.get_num_threads(),
        }
        wall = {b: statistics.median(t[0] for t in ts) for b, ts in times.items()}
        cpu = {b: statistics.median(t[1] for t in ts) for b, ts in times.items()}
        for turn in turns:
            row[f"train_examples_per_s_{turn}"] = round(args.batch_size / wall[turn], 2)
            if args.device == "cpu":
                row[f"train_examples_per_cpu_s_{turn}"] = round(args.batch_size / cpu[turn], 2)
        if {"hf", "bridge"} <= set(turns):
            row["bridge_wall_ratio"] = round(wall["bridge"] / wall["hf"], 2)
            if args.device == "cpu":
                row["bridge_cpu_ratio"] = round(cpu["bridge"] / cpu["hf"], 2)
        start = time.perf_counter()
        n = min(len(data), 4 * args.batch_size)
        collect_features(model, data.select(np.arange(n)), [hooks.resid_name(i) for i in range(hooks.n_layers(model))])
        row["rank0_feature_examples_per_s_all_layers"] = round(n / (time.perf_counter() - start), 1)
        results.append(row)
        if not args.json:
            print(json.dumps(row))
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
