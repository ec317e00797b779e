"""Throughput of the iGSM generator (one process and all cores) and of the full-solution checker.

    python benchmarks/bench_igsm.py [--n 3000] [--json]

Prints problems/s for med and hard with 1 worker and with every core, the scaling efficiency, and the
checker's solutions/s (problem already parsed, and parse + check from the record). The original authors'
generator makes about 45 med and 17 hard problems/s on one core (official-samples.md section 6).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from probekit.igsm.check import check_solution
from probekit.igsm.generate import GenerationConfig, draw_problem, to_record
from probekit.igsm.jobs import check_record, generate_records
from probekit.igsm.world import load_world

AUTHORS_PER_CORE = {"med": 45.0, "hard": 17.0}


def generation_rate(preset: str, n: int, workers: int) -> float:
    config = GenerationConfig(preset, seed=12345)
    start = time.perf_counter()
    for _ in generate_records(config, n, workers):
        pass
    return n / (time.perf_counter() - start)


def checker_rates(n: int) -> dict:
    config = GenerationConfig("med", seed=777)
    drawn = [draw_problem(config, i) for i in range(n)]
    records = [to_record(p, s, config, i) for i, (p, s) in enumerate(drawn)]
    for problem, solution in drawn:  # warm the per-problem caches the way a checker run would
        check_solution(problem, solution)
    start = time.perf_counter()
    for problem, solution in drawn:
        check_solution(problem, solution)
    parsed = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for record in records:
        check_record(record)
    from_record = n / (time.perf_counter() - start)
    return {"check_parsed_per_s": round(parsed, 1), "parse_and_check_per_s": round(from_record, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="problems per measurement")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load_world()
    cores = os.cpu_count() or 1
    results = {"cores": cores, "generate": {}}
    for preset in ("med", "hard"):
        one = generation_rate(preset, args.n, 1)
        every = generation_rate(preset, args.n * cores, cores) if cores > 1 else one
        results["generate"][preset] = {
            "one_core_per_s": round(one, 1),
            "all_cores_per_s": round(every, 1),
            "scaling_efficiency": round(every / (one * cores), 3),
            "vs_authors_one_core": round(one / AUTHORS_PER_CORE[preset], 1),
        }
    results["check"] = checker_rates(min(args.n, 2000))
    if args.json:
        print(json.dumps(results))
        return
    print(f"cores: {cores}")
    for preset, r in results["generate"].items():
        print(
            f"generate {preset:4s}: {r['one_core_per_s']:8.1f}/s on 1 core ({r['vs_authors_one_core']}x the authors'), "
            f"{r['all_cores_per_s']:8.1f}/s on {cores} cores (scaling {r['scaling_efficiency']:.0%})"
        )
    c = results["check"]
    print(
        f"check: {c['check_parsed_per_s']:.1f} solutions/s (parsed problem), {c['parse_and_check_per_s']:.1f}/s from records"
    )


if __name__ == "__main__":
    main()
