"""Generator properties over many seeds: solutions check, op/ip as asked, parse inverts render, splits."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probekit.igsm.check import check_solution
from probekit.igsm.generate import (
    GenerationConfig,
    draw_problem,
    generate_record,
    to_record,
)
from probekit.igsm.parse import parse_problem
from probekit.igsm.presets import PRESETS, Preset, preset_name, resolve_preset, restricted_preset
from probekit.igsm.render import SPLIT_BINS, statement_text, template_bin
from probekit.igsm.world import load_world

OPIP = Path(__file__).resolve().parents[1] / "data" / "official-opip.json"

configs = st.builds(
    GenerationConfig,
    preset=st.sampled_from(["med", "hard"]),
    op=st.one_of(st.none(), st.integers(1, 12)),
    format=st.sampled_from(["pq", "qp"]),
    reask=st.booleans(),
    split=st.sampled_from(["train", "test"]),
    seed=st.integers(0, 2**31),
)
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _drawn(config, index):
    """Problem ``index`` of ``config``: the generator's problem, its JSONL record and the problem parsed back."""
    problem, solution = draw_problem(config, index)
    record = to_record(problem, solution, config, index)
    return problem, record, parse_problem(record["problem"], record["categories"])


@FAST
@given(config=configs, index=st.integers(0, 10_000))
def test_reference_solution_is_correct_and_counts_match(config, index):
    problem, record, parsed = _drawn(config, index)
    verdict = check_solution(parsed, record["solution"])
    assert verdict.correct, verdict.mistakes
    assert verdict.answer == record["answer"] == problem.answer
    assert verdict.unnecessary == ()
    assert record["op"] == record["solution"].count(";") == problem.op_count()
    if config.op is not None and not config.reask:
        assert record["op"] == config.op
    assert record["ip"] == len(record["structure"]) == record["problem"].count("The number of each ")
    assert set(problem.solution_order) == problem.necessary
    assert problem.solution_order[-1] == problem.query
    assert template_bin(problem, problem.solution_order) in SPLIT_BINS[config.split]


@FAST
@given(config=configs, index=st.integers(0, 10_000))
def test_parse_rebuilds_the_generators_graph_and_values(config, index):
    problem, record, parsed = _drawn(config, index)
    assert parsed.items == problem.items and parsed.categories == problem.categories
    assert sorted(parsed.edges) == sorted(problem.edges)
    assert parsed.statements == problem.statements
    assert parsed.query == problem.query
    assert parsed.values == problem.values
    # Without categories the world vocabulary resolves every name; items never stated may be missing,
    # so compare what both sides name.
    bare = parse_problem(record["problem"])
    mine = {problem.name(p): v for p, v in problem.values.items()}
    theirs = {bare.name(p): v for p, v in bare.values.items()}
    assert theirs.items() <= mine.items()
    assert {bare.name(p): statement_text(bare, p) for p in bare.statements} == {
        problem.name(p): statement_text(problem, p) for p in problem.statements
    }
    assert bare.name(bare.query) == problem.name(problem.query)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), index=st.integers(0, 1000))
def test_records_are_a_pure_function_of_seed_and_index(seed, index):
    config = GenerationConfig("med", seed=seed)
    assert json.dumps(generate_record(config, index)) == json.dumps(generate_record(config, index))


def _corruptions(solution: str):
    """(kind, corrupted solution) pairs; each kind is one the checker must name."""
    sentences = solution[:-1].split(". ")
    last = sentences[-1]
    results = [m for m in re.finditer(r"= (\d+)$|= (\d+);", last)]
    m = re.search(r"= (\d+)$", last)
    bumped = last[: m.start(1)] + str((int(m.group(1)) + 1) % 23)
    yield "wrong_answer", ". ".join(sentences[:-1] + [bumped]) + "."
    if len(sentences) > 1:
        yield "not_query_at_end", ". ".join(sentences[:-1]) + "."
        yield "redefined", ". ".join(sentences + [sentences[0]]) + "."
    if results and re.search(r" [+*-] ", last):
        calc = re.search(r"= (\d+) ([+*-]) (\d+) = (\d+)$", last)
        if calc:
            wrong = f"= {calc.group(1)} {calc.group(2)} {calc.group(3)} = {(int(calc.group(4)) + 1) % 23}"
            yield "arithmetic_error", ". ".join(sentences[:-1] + [last[: calc.start()] + wrong]) + "."
    define = re.match(r"Define (.+?) as ([A-Za-z])", last)
    yield (
        "unknown_parameter",
        ". ".join(sentences[:-1] + [last.replace(define.group(1), "Nowhere Hall's Nothing", 1)]) + ".",
    )
    yield "unparseable", ". ".join(sentences[:-1] + ["Define it all as x; so x = banana"]) + "."


@FAST
@given(config=configs, index=st.integers(0, 10_000))
def test_every_corruption_is_rejected_with_its_kind(config, index):
    problem, solution = draw_problem(config, index)
    for kind, corrupted in _corruptions(solution):
        verdict = check_solution(problem, corrupted)
        assert not verdict.correct, (kind, corrupted)
        assert kind in {m.kind for m in verdict.mistakes}, (kind, verdict.mistakes)


def test_used_before_defined_and_wrong_value_carried():
    problem, solution = draw_problem(GenerationConfig("med", op=6, seed=3), 0)
    sentences = solution[:-1].split(". ")
    ref = next(s for s in sentences[1:] if re.search(r"so [A-Za-z] = [A-Za-z] ", s))
    symbol = re.search(r"so [A-Za-z] = ([A-Za-z]) ", ref).group(1)
    first = next(i for i, s in enumerate(sentences) if s.startswith("Define") and f" as {symbol};" in s)
    moved = [s for i, s in enumerate(sentences) if i != first] + [sentences[first]]
    kinds = {m.kind for m in check_solution(problem, ". ".join(moved) + ".").mistakes}
    assert "used_before_defined" in kinds
    values = re.search(r"= (\d+)( [+*-] )(\d+) = (\d+)$", ref) or re.search(r"so [A-Za-z] = [A-Za-z] = (\d+)$", ref)
    carried = ref[: values.start(1)] + str((int(values.group(1)) + 1) % 23) + ref[values.end(1) :]
    kinds = {m.kind for m in check_solution(problem, solution.replace(ref, carried)).mistakes}
    assert "wrong_value_carried" in kinds


def _two_sample_chi2(ours: Counter, theirs: dict, n_theirs: int) -> tuple[float, int]:
    n_ours = sum(ours.values())
    keys = sorted(set(ours) | {int(k) for k in theirs})
    chi2 = 0.0
    for k in keys:
        a, b = ours.get(k, 0), theirs.get(str(k), 0)
        if a + b:
            chi2 += (math.sqrt(n_theirs / n_ours) * a - math.sqrt(n_ours / n_theirs) * b) ** 2 / (a + b)
    return chi2, len(keys) - 1


def _chi2_critical(df: int, z: float = 3.09) -> float:
    """Wilson-Hilferty upper quantile (z = 3.09: p = 0.001)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


@pytest.mark.parametrize("preset,n", [("med", 1500), ("hard", 800)])
def test_op_and_ip_distributions_match_the_authors(preset, n):
    official = json.loads(OPIP.read_text())[preset]
    config = GenerationConfig(preset, seed=20260101, split="train")  # the authors default to train bins
    drawn = [draw_problem(config, i)[0] for i in range(n)]
    for key, value in (("op", lambda p: p.op_count()), ("ip", lambda p: len(p.edges)), ("layers", lambda p: p.depth)):
        chi2, df = _two_sample_chi2(Counter(map(value, drawn)), official[key], official["n"])
        assert chi2 < _chi2_critical(df), f"{preset} {key}: chi2 {chi2:.1f} on {df} df"


def test_presets_bound_op_and_ip():
    for name, preset in PRESETS.items():
        config = GenerationConfig(name, seed=11)
        for i in range(60):
            record = generate_record(config, i)
            assert 1 <= record["op"] <= preset.max_op
            assert 2 <= record["ip"] <= preset.max_edge


def test_derived_presets_are_values_resolved_from_their_names():
    before = dict(PRESETS)
    restricted = resolve_preset("med-op4-ip12")
    assert restricted == Preset("med-op4-ip12", 4, 12) == restricted_preset("med", 4, 12)
    assert resolve_preset("med-op4") == Preset("med-op4", 4, 20)
    assert resolve_preset("hard-ip12") == Preset("hard-ip12", 21, 12)
    assert resolve_preset("med") is PRESETS["med"] and preset_name("med", 4, 12) == "med-op4-ip12"
    assert dict(PRESETS) == before == {"med": Preset("med", 15, 20), "hard": Preset("hard", 21, 28)}  # untouched
    with pytest.raises(TypeError):
        PRESETS["med-op4"] = restricted  # read-only
    for bad in ("easy", "med-op0", "med-op04", "med-ip12-op4", "med-op4-", "medium-op4", "med-op4-ip11"):
        with pytest.raises(ValueError, match="preset"):
            resolve_preset(bad)
    with pytest.raises(ValueError, match="preset"):
        restricted_preset("easy", 4)
    # a derived name needs no set-up anywhere: the generator resolves it, and its records keep its bounds
    config = GenerationConfig("med-op4-ip12", seed=5)
    records = [generate_record(config, i) for i in range(40)]
    assert all(r["preset"] == "med-op4-ip12" and 1 <= r["op"] <= 4 and r["ip"] <= 12 for r in records)
    assert generate_record(GenerationConfig("med-op4-ip12", op=4, split="test"), 0)["op"] == 4
    assert dict(PRESETS) == before


def test_bad_configs_are_refused_clearly():
    with pytest.raises(ValueError, match="preset"):
        GenerationConfig("easy")
    with pytest.raises(ValueError, match="format"):
        GenerationConfig(format="xy")
    with pytest.raises(ValueError, match="op must be"):
        GenerationConfig(op=0)


def test_world_vocabulary_has_the_papers_shape_and_safe_names():
    world = load_world()
    assert len(world.chains) == 4
    names = list(world.item_home) + list(world.category_home)
    for chain in world.chains:
        assert len(chain) == 4
        for layer in chain:
            assert len(layer.subcategories) == 5
            assert 90 <= len(layer.items) <= 110
    for name in names:
        assert re.fullmatch(r"[A-Za-z][A-Za-z -]*[a-z]", name), name
        for sep in (". ", "'s", ", ", " and ", " as ", " each ", "; ", " = "):
            assert sep not in f" {name} ", (name, sep)
    assert len(set(world.item_home)) == sum(len(layer.items) for chain in world.chains for layer in chain)


def test_steps_a_and_b_spend_at_least_min_n_e_ops():
    """The bound behind skipping knobs early: op before step D is >= min(n, e) for every structure."""
    from probekit.igsm import generate as g

    rng = g.FastRandom(99)
    for _ in range(3000):
        preset = PRESETS[rng.choice(["med", "hard"])]
        knobs = g._draw_knobs(rng, preset, rng.randint(1, preset.max_op), forced=False)
        draft = g._Draft(rng, knobs)
        try:
            draft.choose_params(knobs.n, knobs.m)
        except g._Infeasible:
            continue
        op_min = sum(g._authors_cost(draft, p) for p in draft.chosen)
        assert min(knobs.n, draft.e) <= op_min <= knobs.m
