"""Throughput of evaluation: batched KV-cache generation (problems/s, tokens/s) and judging (solutions/s).

    python benchmarks/bench_eval.py [--checkpoint DIR | --model gpt2-tiny] [--device cpu|cuda] [--batch-size 32]
                                    [--n 64] [--preset med] [--op 15] [--max-new-tokens M] [--json]

Default model: a random ``gpt2-tiny`` on CPU, a random ``gpt2-12-12`` on CUDA (bf16 autocast). A random model
never writes ``[EOS]``, so every row runs the whole budget (default: the evaluation budget for the op,
40 * op + 64): this is the no-early-stop worst case of ``probekit eval``; a trained model stops at its
``[EOS]`` (about 18 tokens per op). ``tokens_per_s`` counts generated tokens (rows x steps) per second of
generation, prefill included; ``judge_per_s`` is the checker + first-error search on the reference solutions.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch

from probekit.checkpoint import select_device
from probekit.evaluate.generation import ModelGenerator
from probekit.evaluate.judge import judge
from probekit.evaluate.run import EXTRA_TOKENS, TOKENS_PER_OP
from probekit.evaluate.sets import EvalSet, draw_set
from probekit.igsm.render import prompt_text


def load(args):
    if args.checkpoint:
        from probekit.checkpoint import load_checkpoint

        model, tokenizer, _ = load_checkpoint(args.checkpoint, device=args.device)
        return model, tokenizer, args.checkpoint
    from probekit.modeling import build_model, load_model_config
    from probekit.tokenizer import default_tokenizer

    name = args.model or ("gpt2-12-12" if args.device == "cuda" else "gpt2-tiny")
    tokenizer = default_tokenizer()
    model = build_model(load_model_config(name), tokenizer).to(args.device).eval()
    return model, tokenizer, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="checkpoint folder (default: a random model of --model)")
    parser.add_argument("--model", help="model config name (default: gpt2-tiny on cpu, gpt2-12-12 on cuda)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=select_device())
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n", type=int, default=64, help="problems")
    parser.add_argument("--preset", choices=["med", "hard"], default="med")
    parser.add_argument("--op", type=int, default=15)
    parser.add_argument("--max-new-tokens", type=int, help="default: 40 * op + 64")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    eval_set = EvalSet(args.preset, args.op, n=args.n, seed=123)
    drawn = draw_set(eval_set)
    prompts = [prompt_text(p, "pq") for p, _ in drawn]
    budget = args.max_new_tokens or TOKENS_PER_OP * args.op + EXTRA_TOKENS
    model, tokenizer, name = load(args)
    gen = ModelGenerator(model, tokenizer, batch_size=args.batch_size, device=args.device, progress=False)

    gen(prompts[: min(len(prompts), args.batch_size)], max_new_tokens=8)  # warm-up (kernels, allocator)
    gen.stats = dict.fromkeys(gen.stats, 0)
    if args.device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    completions = gen(prompts, max_new_tokens=budget)
    if args.device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start

    start = time.perf_counter()
    for (problem, reference), _ in zip(drawn, completions):
        judge(problem, reference, str(problem.answer))
    judge_seconds = time.perf_counter() - start

    stats = gen.stats
    result = {
        "model": name,
        "device": args.device,
        "device_name": torch.cuda.get_device_name()
        if args.device == "cuda"
        else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "preset": args.preset,
        "op": args.op,
        "n": args.n,
        "batch_size": args.batch_size,
        "max_new_tokens": budget,
        "mean_prompt_tokens": round(stats["prompt_tokens"] / max(1, stats["rows"]), 1),
        "generated_tokens": stats["generated_tokens"],
        "seconds": round(seconds, 3),
        "problems_per_s": round(args.n / seconds, 2),
        "tokens_per_s": round(stats["generated_tokens"] / seconds, 1),
        "judge_per_s": round(args.n / judge_seconds, 1) if judge_seconds > 0 else None,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>20}  {value}", file=sys.stdout)


if __name__ == "__main__":
    main()
