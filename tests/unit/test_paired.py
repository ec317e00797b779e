"""Paired comparison of two evaluations (probekit.evaluate.paired, ``probekit compare``) and the exact McNemar test."""

from __future__ import annotations

import json

import pytest
from clitools import assert_clean_failure, run_cli

from probekit.evaluate.metrics import mcnemar_exact
from probekit.evaluate.paired import compare_records, pool_names, read_records


def test_mcnemar_exact_hand_values():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 5) == mcnemar_exact(5, 0) == 2 / 32
    assert mcnemar_exact(1, 9) == 2 * (1 + 10) / 1024  # 2 (C(10, 0) + C(10, 1)) / 2**10
    assert mcnemar_exact(3, 3) == 1.0  # the doubled tail passes 1
    assert mcnemar_exact(63, 47) == pytest.approx(0.1523, abs=1e-4)
    assert mcnemar_exact(2000, 2200) < 0.01 < mcnemar_exact(2000, 2100)  # large counts stay finite
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def records(correct: dict[str, list[bool]], seed: int = 0, text: str = "problem") -> list[dict]:
    """Eval records of the small family (max_op 4): ``correct[set_name]`` lists each problem's verdict."""
    out = []
    for name, flags in correct.items():
        split = "heldout" if name.startswith("held-out") else "test"
        for i, ok in enumerate(flags):
            key = {"set": name, "preset": "med-op4-ip12", "format": "pq", "split": split, "seed": seed, "index": i}
            out.append(key | {"problem": f"{text} {name} {i}", "correct": ok})
    return out


T, F = True, False


def test_counts_per_set_and_pooled_over_the_in_distribution_sets():
    a = records({"op=2": [T, T, F, F, T], "op=3": [T, F, F], "op=5": [F, F], "held-out op=3": [T, T]})
    b = records({"op=2": [T, F, T, T, T], "op=3": [F, T, T], "op=5": [F, T], "held-out op=3": [T, F]})
    result = compare_records(a, b)
    rows = {r["set"]: r for r in result.rows()}
    assert list(rows) == ["op=2", "op=3", "op=5", "held-out op=3", "pooled (op=2, op=3)"]
    assert (rows["op=2"]["correct_a"], rows["op=2"]["correct_b"]) == (3, 4)
    assert (rows["op=2"]["only_a"], rows["op=2"]["only_b"]) == (1, 2)
    assert (rows["op=3"]["only_a"], rows["op=3"]["only_b"]) == (1, 2)
    pooled = rows["pooled (op=2, op=3)"]  # op 5 is beyond max_op 4; held-out sets are not the test split
    assert (pooled["n"], pooled["correct_a"], pooled["correct_b"], pooled["only_a"], pooled["only_b"]) == (
        8,
        4,
        6,
        2,
        4,
    )
    assert pooled["difference"] == pytest.approx(2 / 8)
    assert pooled["p_value"] == mcnemar_exact(2, 4)
    assert pooled["ci_low_b"] < pooled["accuracy_b"] < pooled["ci_high_b"]
    assert result.unmatched == []


def test_an_explicit_pool_and_sets_only_one_side_holds():
    a = records({"op=2": [T, F], "op=3": [T, T], "reask op=5": [F, T]})
    b = records({"op=2": [F, F], "reask op=5": [T, T]})
    pool = pool_names("2,r5", a)
    assert pool == ["op=2", "reask op=5"]
    heldout = records({"held-out op=2": [T]}, seed=10**12)  # held-out records carry the reserved seed
    assert pool_names("h2", heldout) == ["held-out op=2"]
    result = compare_records(a, b, pool)
    assert result.unmatched == ["op=3"]
    assert [c.set for c in result.sets] == ["op=2", "reask op=5"]
    assert result.pooled is not None and (result.pooled.only_a, result.pooled.only_b) == (1, 1)
    with pytest.raises(ValueError, match="cannot pool 'op=3'"):
        compare_records(a, b, ["op=3"])
    empty = compare_records(records({"op=6": [T]}), records({"op=6": [F]}))
    assert empty.pooled is None and len(empty.rows()) == 1


def test_different_problems_are_refused():
    a = records({"op=2": [T, F, T]})
    with pytest.raises(ValueError, match="judged in A and not in B"):
        compare_records(a, records({"op=2": [T, F]}))
    with pytest.raises(ValueError, match="holds problems in B that A does not judge"):
        compare_records(records({"op=2": [T, F]}), a)
    with pytest.raises(ValueError, match="judged in A and not in B"):  # another seed: other problems
        compare_records(a, records({"op=2": [T, F, T]}, seed=1))
    with pytest.raises(ValueError, match="differs between A and B"):
        compare_records(a, records({"op=2": [T, F, T]}, text="other"))
    with pytest.raises(ValueError, match="judged twice"):
        compare_records(a + a[:1], a)


def write_eval(folder, rows: list[dict]):
    folder.mkdir()
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_compare_command_json_and_clean_failures(tmp_path):
    a = write_eval(tmp_path / "a", records({"op=2": [T, T, F], "op=3": [F, F, F]}))
    b = write_eval(tmp_path / "b", records({"op=2": [F, T, T], "op=3": [T, T, F]}))
    proc = run_cli("compare", a, b / "records.jsonl", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["set"] for r in rows] == ["op=2", "op=3", "pooled (op=2, op=3)"]
    assert (rows[-1]["only_a"], rows[-1]["only_b"], rows[-1]["p_value"]) == (1, 3, mcnemar_exact(1, 3))
    assert "McNemar p" in proc.stderr  # the table goes to stderr with --json
    plain = run_cli("compare", a, b, "--pool", "3")
    assert plain.returncode == 0 and plain.stdout.splitlines()[-1].startswith("pooled (op=3)")

    assert_clean_failure(run_cli("compare", a, tmp_path / "missing"), 2)
    (tmp_path / "bad.jsonl").write_text('{"set": "op=2"}\nnot json\n')
    proc = run_cli("compare", a, tmp_path / "bad.jsonl")
    assert_clean_failure(proc, 2)
    assert "line 1: no field 'preset'" in proc.stderr
    assert_clean_failure(run_cli("compare", a, b, "--pool", "x9"), 2)
    assert read_records(a)[0]["problem"] == "problem op=2 0"
