"""The ``probekit`` command: generate / check / labels end to end, determinism, atomic writes, bad input.

In-process calls (``probekit.cli.main``) are used where stdout / files are enough; ``python -m probekit`` in a
subprocess where the exit status, stderr or the absence of a traceback matters, or where a fresh interpreter
is needed (worker processes, ``sys.modules`` after ``--help``, a killed run).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from clitools import assert_clean_failure, lines_of, no_temp_files, records_of, run_cli, write_jsonl

from probekit.cli import build_parser, main
from probekit.igsm.check import MISTAKE_KINDS
from probekit.igsm.generate import (
    GenerationConfig,
    draw_problem,
    generate_record,
)
from probekit.igsm.presets import PRESETS, resolve_preset
from probekit.igsm.render import SPLIT_BINS, template_bin
from probekit.records import atomic_output, dumps

SEED = 11
N = 10
REQUIRED = {
    "problem": str,
    "question": str,
    "solution": str,
    "answer": int,
    "op": int,
    "ip": int,
    "seed": int,
    "index": int,
    "categories": dict,
    "structure": list,
}
VERDICT_KEYS = {"correct", "answer", "expected_answer", "first_error", "mistakes", "unnecessary"}
LABEL_KEYS = {"params", "nece", "dep", "distance", "steps"}
STEP_KEYS = {"known", "can_next", "nece_next", "value"}


# ---------------------------------------------------------------------------------------------- helpers
def generate(out: Path, *extra, n: int = N, seed: int = SEED) -> Path:
    """Run ``probekit generate`` in-process into ``out``; returns ``out``."""
    rc = main(["generate", "--n", str(n), "--seed", str(seed), "--out", str(out), "--quiet", *map(str, extra)])
    assert rc == 0
    return out


def sentences(solution: str) -> list[str]:
    return solution.strip().removesuffix(".").split(". ")


def defined_name(sentence: str) -> str:
    return re.match(r"Define (.+) as [A-Za-z]; ", sentence).group(1)


@pytest.fixture(scope="module")
def ref_path(tmp_path_factory) -> Path:
    """The reference run: preset med, seed SEED, N records, one worker."""
    return generate(tmp_path_factory.mktemp("ref") / "ref.jsonl")


@pytest.fixture(scope="module")
def ref_records(ref_path) -> list[dict]:
    return records_of(ref_path)


# ---------------------------------------------------------------------------------------------- generate
def test_generate_writes_one_complete_record_per_line(ref_path, ref_records):
    raw = ref_path.read_text(encoding="utf-8")
    assert raw.endswith("\n") and raw.count("\n") == N
    assert len(ref_records) == N
    for i, record in enumerate(ref_records):
        for key, kind in REQUIRED.items():
            assert key in record, key
            assert isinstance(record[key], kind) and not isinstance(record[key], bool), (key, record[key])
        assert record["index"] == i and record["seed"] == SEED
        assert 0 <= record["answer"] < 23
        assert 1 <= record["op"] <= PRESETS["med"].max_op and 1 <= record["ip"] <= PRESETS["med"].max_edge
        assert record["op"] == record["solution"].count(";")
        assert record["problem"].endswith(" " + record["question"])  # default format pq
        assert all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in record["categories"].values())
        items = {x for v in record["categories"].values() for x in v}
        assert len(record["structure"]) == record["ip"]
        assert all(len(pair) == 2 and set(pair) <= items for pair in record["structure"])


def test_generate_matches_the_library_byte_for_byte(ref_path):
    config = GenerationConfig(seed=SEED)
    assert lines_of(ref_path) == [dumps(generate_record(config, i)) for i in range(N)]


def test_generate_is_deterministic_across_runs_workers_and_start(tmp_path, ref_path):
    ref_bytes = ref_path.read_bytes()
    lines = lines_of(ref_path)
    # a second run in this process, one worker
    assert generate(tmp_path / "again.jsonl").read_bytes() == ref_bytes
    # a fresh interpreter with two worker processes
    proc = run_cli("generate", "--n", N, "--seed", SEED, "--workers", 2, "--out", tmp_path / "w2.jsonl", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "w2.jsonl").read_bytes() == ref_bytes
    # records 5..9 alone equal lines 5..9 of the run of 10, with one and with three workers
    assert lines_of(generate(tmp_path / "tail.jsonl", "--start", 5, n=5)) == lines[5:10]
    proc = run_cli(
        "generate", "--n", 5, "--start", 5, "--seed", SEED, "--workers", 3, "--out", tmp_path / "t3.jsonl", "--quiet"
    )
    assert proc.returncode == 0, proc.stderr
    assert lines_of(tmp_path / "t3.jsonl") == lines[5:10]
    assert [r["index"] for r in records_of(tmp_path / "t3.jsonl")] == list(range(5, 10))
    # another seed is another data set
    other = records_of(generate(tmp_path / "other.jsonl", seed=SEED + 1))
    assert [r["problem"] for r in other] != [json.loads(x)["problem"] for x in lines]


@pytest.mark.parametrize("preset,op", [("med", 3), ("med", 15), ("hard", 20), ("med-op4-ip12", 4)])
def test_generate_op_forces_the_op_count(tmp_path, preset, op):
    records = records_of(generate(tmp_path / "op.jsonl", "--preset", preset, "--op", op, n=4))
    assert len(records) == 4
    assert all(r["op"] == op and r["preset"] == preset for r in records)
    assert all(r["ip"] <= resolve_preset(preset).max_edge for r in records)


def test_generate_format_qp_puts_the_question_first(tmp_path, ref_records):
    qp = records_of(generate(tmp_path / "qp.jsonl", "--format", "qp"))
    for a, b in zip(ref_records, qp):
        assert b["problem"].startswith(b["question"] + " ")
        # same problem, other rendering: the statements are the same text
        assert b["problem"].removeprefix(b["question"] + " ") == a["problem"].removesuffix(" " + a["question"])
        assert (b["solution"], b["answer"], b["question"]) == (a["solution"], a["answer"], a["question"])


def test_generate_reask_changes_some_questions_and_stays_correct(tmp_path, ref_records, capsys):
    reask = records_of(generate(tmp_path / "reask.jsonl", "--reask"))
    assert all(r["reask"] is True for r in reask)
    assert any(a["question"] != b["question"] for a, b in zip(ref_records, reask))
    capsys.readouterr()
    assert (
        main(
            ["check", "--input", str(tmp_path / "reask.jsonl"), "--out", str(tmp_path / "v.jsonl"), "--json", "--quiet"]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == summary["correct"] == N
    assert all(v["correct"] and v["answer"] == r["answer"] for v, r in zip(records_of(tmp_path / "v.jsonl"), reask))


@pytest.mark.parametrize("split", ["test", "all"])
def test_generate_split_records_are_correct_and_in_their_bins(tmp_path, split, capsys):
    path = generate(tmp_path / f"{split}.jsonl", "--split", split, n=6)
    records = records_of(path)
    assert all(r["split"] == split for r in records)
    config = GenerationConfig(split=split, seed=SEED)
    for i in range(3):
        problem, _ = draw_problem(config, i)
        assert template_bin(problem, problem.solution_order) in SPLIT_BINS[split]
    capsys.readouterr()
    assert main(["check", "--input", str(path), "--out", str(tmp_path / "v.jsonl"), "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["correct"] == 6


def test_generate_json_summary(tmp_path, capsys):
    capsys.readouterr()
    assert main(["generate", "--n", "5", "--seed", "3", "--out", str(tmp_path / "g.jsonl"), "--json", "--quiet"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    summary = json.loads(out[0])
    assert summary["n"] == 5
    assert sum(summary["op_histogram"].values()) == 5
    assert len(lines_of(tmp_path / "g.jsonl")) == 5


def test_generate_to_stdout_without_out(capsys):
    capsys.readouterr()
    assert main(["generate", "--n", "3", "--seed", str(SEED), "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [dumps(generate_record(GenerationConfig(seed=SEED), i)) for i in range(3)]


def test_generate_json_without_out_keeps_stdout_for_records(capsys):
    capsys.readouterr()
    assert main(["generate", "--n", "3", "--seed", str(SEED), "--json", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [dumps(generate_record(GenerationConfig(seed=SEED), i)) for i in range(3)]
    assert '"op_histogram"' in captured.err  # the summary went to stderr instead


@pytest.mark.parametrize(
    "bad",
    [
        ["--n", "-1"],
        ["--n", "2", "--workers", "0"],
        ["--n", "2", "--op", "0"],
        ["--n", "2", "--op", "53"],
        ["--n", "2", "--preset", "easy"],
        ["--n", "2", "--preset", "med-op4-ip6"],
        ["--n", "2", "--format", "xy"],
        ["--n", "2", "--split", "dev"],
        [],
    ],
)
def test_generate_refuses_bad_options(tmp_path, capsys, bad):
    out = tmp_path / "never.jsonl"
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--out", str(out), "--quiet", *bad])
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- atomic writes
def test_atomic_output_failure_leaves_no_file_and_no_temp(tmp_path):
    target = tmp_path / "sub" / "out.jsonl"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output(target) as fh:
            fh.write('{"half": ')
            fh.flush()
            assert not target.exists()  # nothing under the final name while writing
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_output_failure_keeps_the_previous_file(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(target) as fh:
            fh.write("new, half written")
            raise KeyboardInterrupt
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_atomic_output_success_replaces_the_file(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with atomic_output(target) as fh:
        fh.write("new\n")
        assert target.read_text() == "old\n"
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_atomic_output_none_is_stdout(capsys):
    with atomic_output(None) as fh:
        fh.write("to stdout\n")
    assert capsys.readouterr().out == "to stdout\n"


# ---------------------------------------------------------------------------------------------- check
def check_file(tmp_path: Path, inp: Path, capsys) -> tuple[list[dict], dict]:
    """``probekit check --input inp --out ... --json``: (verdicts, summary)."""
    out = tmp_path / (inp.stem + ".verdicts.jsonl")
    capsys.readouterr()
    assert main(["check", "--input", str(inp), "--out", str(out), "--json", "--quiet"]) == 0
    stdout = capsys.readouterr().out.strip().splitlines()
    assert len(stdout) == 1, stdout  # --json with --out: only the summary on stdout
    return records_of(out), json.loads(stdout[0])


def test_reference_solutions_check_correct(tmp_path, ref_path, ref_records, capsys):
    verdicts, summary = check_file(tmp_path, ref_path, capsys)
    assert len(verdicts) == N
    for verdict, record in zip(verdicts, ref_records):
        assert set(verdict) >= VERDICT_KEYS
        assert verdict["correct"] is True, verdict["mistakes"]
        assert verdict["answer"] == verdict["expected_answer"] == record["answer"]
        assert verdict["first_error"] is None and verdict["mistakes"] == [] and verdict["unnecessary"] == []
    assert summary["n"] == summary["correct"] == N
    assert summary["accuracy"] == 1.0


def test_check_without_categories_still_correct(tmp_path, ref_records, capsys):
    stripped = [{k: v for k, v in r.items() if k in ("problem", "solution")} for r in ref_records]
    verdicts, _ = check_file(tmp_path, write_jsonl(tmp_path / "bare.jsonl", stripped), capsys)
    assert all(v["correct"] for v in verdicts)


def test_corrupting_one_number_makes_a_solution_incorrect(tmp_path, ref_records, capsys):
    first, last = [], []
    for r in ref_records:
        parts = sentences(r["solution"])
        value = int(re.search(r"(\d+)$", parts[0]).group(1))
        bad_first = re.sub(r"\d+$", str((value + 1) % 23), parts[0])
        first.append(dict(r, solution=". ".join([bad_first, *parts[1:]]) + "."))
        value = int(re.search(r"(\d+)$", parts[-1]).group(1))
        bad_last = re.sub(r"\d+$", str((value + 1) % 23), parts[-1])
        last.append(dict(r, solution=". ".join([*parts[:-1], bad_last]) + "."))
    verdicts, summary = check_file(tmp_path, write_jsonl(tmp_path / "first.jsonl", first), capsys)
    assert summary["correct"] == 0
    for verdict, record in zip(verdicts, first):
        assert verdict["correct"] is False and verdict["mistakes"]
        assert verdict["first_error"] == defined_name(sentences(record["solution"])[0])
        assert {m["kind"] for m in verdict["mistakes"]} <= set(MISTAKE_KINDS)
        assert all(set(m) >= {"param", "kind"} for m in verdict["mistakes"])
        assert verdict["expected_answer"] == record["answer"]
    verdicts, summary = check_file(tmp_path, write_jsonl(tmp_path / "last.jsonl", last), capsys)
    assert summary["correct"] == 0
    for verdict, record in zip(verdicts, ref_records):
        assert verdict["correct"] is False
        assert verdict["answer"] == (record["answer"] + 1) % 23 != verdict["expected_answer"]
        assert "wrong_answer" in {m["kind"] for m in verdict["mistakes"]}
        assert verdict["first_error"] == record["question_param"]


def test_check_judges_every_line_and_drops_none(tmp_path, ref_records, capsys):
    good = ref_records[0]
    unknown = "Define Nowhere Depot's Phantom Crate as W; so W = 3. " + good["solution"]
    lines = [
        good,  # 1 ok
        "this is {not json",  # 2 not JSON
        [1, 2, 3],  # 3 JSON, not an object
        "42",  # 4 JSON scalar
        "",  # 5 blank line
        {"solution": good["solution"]},  # 6 missing problem
        {"problem": good["problem"]},  # 7 missing solution
        dict(good, problem=12),  # 8 wrong type
        dict(good, solution=["Define"]),  # 9 wrong type
        dict(good, categories=["not", "an", "object"]),  # 10 wrong type
        dict(good, problem="no question here."),  # 11 problem that does not parse
        dict(good, solution=unknown),  # 12 unknown parameter
        dict(good, solution="lorem ipsum; dolor = sit."),  # 13 garbage solution
        ref_records[1],  # 14 ok: the run went on
    ]
    verdicts, summary = check_file(tmp_path, write_jsonl(tmp_path / "mixed.jsonl", lines), capsys)
    assert len(verdicts) == len(lines) == summary["n"]
    assert all(set(v) >= VERDICT_KEYS for v in verdicts)
    assert verdicts[0]["correct"] and verdicts[13]["correct"]
    assert verdicts[13]["answer"] == ref_records[1]["answer"]
    for number in range(2, 12):  # lines that cannot be judged at all
        v = verdicts[number - 1]
        assert v["correct"] is False and v["expected_answer"] is None, (number, v)
        assert [m["kind"] for m in v["mistakes"]] == ["unparseable"], (number, v)
        assert v["mistakes"][0]["detail"], "an unparseable verdict carries its reason"
    for number in (2, 3, 4, 5):  # the reason names the line
        assert f"line {number}" in verdicts[number - 1]["mistakes"][0]["detail"]
    assert "problem" in verdicts[5]["mistakes"][0]["detail"] and "solution" in verdicts[6]["mistakes"][0]["detail"]
    v = verdicts[11]
    assert v["correct"] is False and v["first_error"] == "Nowhere Depot's Phantom Crate"
    assert {"param": "Nowhere Depot's Phantom Crate", "kind": "unknown_parameter"}.items() <= v["mistakes"][0].items()
    v = verdicts[12]
    assert v["correct"] is False and v["expected_answer"] == good["answer"]
    assert "unparseable" in {m["kind"] for m in v["mistakes"]}
    assert summary["correct"] == 2
    assert summary["solutions_with_mistake_kind"]["unparseable"] >= 11


def test_check_to_stdout_one_verdict_per_line(ref_path, capsys):
    capsys.readouterr()
    assert main(["check", "--input", str(ref_path), "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == N and all(json.loads(line)["correct"] for line in out)


def test_check_json_without_out_keeps_one_line_per_record(ref_path, capsys):
    capsys.readouterr()
    assert main(["check", "--input", str(ref_path), "--json", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == N and all(set(json.loads(line)) >= VERDICT_KEYS for line in out)


def test_check_empty_file(tmp_path):
    inp, out = tmp_path / "empty.jsonl", tmp_path / "v.jsonl"
    inp.write_text("")
    proc = run_cli("check", "--input", inp, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "empty" in proc.stderr and "Traceback" not in proc.stderr
    assert out.exists() and out.read_text() == ""
    assert proc.stdout == ""


@pytest.mark.parametrize("command", ["check", "labels"])
def test_missing_input_file_is_a_clean_error(tmp_path, command):
    missing, out = tmp_path / "nope.jsonl", tmp_path / "out.jsonl"
    proc = run_cli(command, "--input", missing, "--out", out, "--quiet")
    assert_clean_failure(proc, 2)
    assert str(missing) in proc.stderr
    assert not out.exists()


def test_check_invalid_utf8_line_is_one_unparseable_verdict(tmp_path, ref_path):
    good = ref_path.read_bytes().splitlines()[0]
    inp, out = tmp_path / "bytes.jsonl", tmp_path / "v.jsonl"
    inp.write_bytes(good + b"\n" + b'{"problem": "\xff\xfe"}\n' + good + b"\n")
    proc = run_cli("check", "--input", inp, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    verdicts = records_of(out)
    assert [v["correct"] for v in verdicts] == [True, False, True]
    assert [m["kind"] for m in verdicts[1]["mistakes"]] == ["unparseable"]
    assert "line 2" in verdicts[1]["mistakes"][0]["detail"]
    assert main(["labels", "--input", str(inp), "--out", str(out), "--quiet"]) == 0
    labels = records_of(out)
    assert len(labels) == 3 and "line 2" in labels[1]["error"] and "error" not in labels[2]


@pytest.mark.parametrize("command", ["check", "labels"])
def test_bad_categories_values_do_not_stop_the_run(tmp_path, ref_records, command):
    good = ref_records[0]
    keys = list(good["categories"])
    bad = [
        dict(good, categories={k: None for k in keys}),
        dict(good, categories={k: 5 for k in keys}),
        dict(good, categories={k: [[x] for x in v] for k, v in good["categories"].items()}),
        dict(good, categories={k: [1, 2] for k in keys}),
    ]
    inp, out = write_jsonl(tmp_path / "cats.jsonl", [good, *bad, good]), tmp_path / "out.jsonl"
    proc = run_cli(command, "--input", inp, "--out", out, "--quiet")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    results = records_of(out)
    assert len(results) == len(bad) + 2
    for result in results[1:-1]:
        if command == "check":
            assert result["correct"] is False and [m["kind"] for m in result["mistakes"]] == ["unparseable"]
            assert "categories" in result["mistakes"][0]["detail"]
        else:
            assert set(result) == {"error"}
    if command == "check":
        assert results[0]["correct"] and results[-1]["correct"]
    else:
        assert "error" not in results[0] and "error" not in results[-1]


# ---------------------------------------------------------------------------------------------- labels
def test_labels_follow_each_solution(tmp_path, ref_path, ref_records, capsys):
    capsys.readouterr()
    assert main(["labels", "--input", str(ref_path), "--quiet"]) == 0
    stdout = capsys.readouterr().out
    out = tmp_path / "labels.jsonl"
    assert main(["labels", "--input", str(ref_path), "--out", str(out), "--quiet"]) == 0
    assert out.read_text(encoding="utf-8") == stdout
    labels = records_of(out)
    assert len(labels) == N
    for lab, record in zip(labels, ref_records):
        assert set(lab) >= LABEL_KEYS
        params, query = lab["params"], record["question_param"]
        assert set(lab["nece"]) <= set(params) and query in lab["nece"]
        assert lab["distance"][query] == 0 and set(lab["distance"]) == set(lab["nece"])
        assert all(a in params and b in params for a, b in lab["dep"])
        sents = sentences(record["solution"])
        steps = lab["steps"]
        assert len(steps) == len(sents) + 1  # t = 0..T
        for t, step in enumerate(steps):
            assert set(step) >= STEP_KEYS and step.get("t", t) == t
            assert step["known"] == [defined_name(s) for s in sents[:t]]
            assert set(step["nece_next"]) <= set(step["can_next"]) <= set(params)
            assert not set(step["can_next"]) & set(step["known"])
            assert set(step["value"]) == set(step["known"])
            assert all(isinstance(v, int) and 0 <= v < 23 for v in step["value"].values())
        assert steps[0]["known"] == [] and steps[0]["value"] == {}
        assert steps[-1]["value"][query] == record["answer"]
        assert set(lab["nece"]) == set(steps[-1]["known"])  # the reference solution defines exactly nece


def test_labels_bad_lines_give_error_lines_in_place(tmp_path, ref_records, capsys):
    good = ref_records[0]
    no_solution = {k: v for k, v in good.items() if k != "solution"}
    lines = [good, "{oops", [1], "", {"solution": "x"}, dict(good, solution=7), dict(good, problem="?"), no_solution]
    inp, out = write_jsonl(tmp_path / "mixed.jsonl", lines), tmp_path / "labels.jsonl"
    capsys.readouterr()
    assert main(["labels", "--input", str(inp), "--out", str(out), "--quiet", "--json"]) == 0
    labels = records_of(out)
    assert len(labels) == len(lines)
    assert set(labels[0]) >= LABEL_KEYS
    summary = json.loads(capsys.readouterr().out)  # the errors are counted, not only written in place
    positions = len(labels[0]["steps"]) + len(labels[-1]["steps"])
    assert summary == {
        "n": 8,
        "labelled": 2,
        "errors": 6,
        "solution_positions": positions,
        "first_error": labels[1]["error"],
    }
    for number in range(2, 8):
        lab = labels[number - 1]
        assert set(lab) == {"error"} and isinstance(lab["error"], str) and lab["error"], (number, lab)
    for number in (2, 3, 4):
        assert f"line {number}" in labels[number - 1]["error"]
    # without a solution: the labels follow the reference order of the necessary parameters
    lab = labels[-1]
    assert set(lab) >= LABEL_KEYS
    assert len(lab["steps"]) == len(lab["nece"]) + 1
    assert set(lab["steps"][-1]["known"]) == set(lab["nece"])
    assert lab["steps"][-1]["value"][good["question_param"]] == good["answer"]


# ---------------------------------------------------------------------------------------------- --help
def test_help_does_not_import_torch(tmp_path):
    """A trap ``torch`` package on the path: any import of torch (even a guarded one) would show."""
    trap = tmp_path / "trap" / "torch"
    trap.mkdir(parents=True)
    (trap / "__init__.py").write_text("import sys\nsys.stderr.write('TORCH WAS IMPORTED\\n')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(trap.parent), os.environ.get("PYTHONPATH")])))
    script = textwrap.dedent(
        """
        import sys
        from probekit.cli import build_parser, main
        build_parser()
        for argv in (["--help"], ["generate", "--help"], ["check", "--help"], ["labels", "--help"]):
            try:
                main(argv)
            except SystemExit as exc:
                assert exc.code == 0, (argv, exc.code)
        heavy = [m for m in ("torch", "numpy", "tokenizers", "transformers") if m in sys.modules]
        print("HEAVY", heavy, file=sys.stderr)
        sys.exit(1 if "torch" in sys.modules else 0)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH WAS IMPORTED" not in proc.stderr
    assert "HEAVY []" in proc.stderr, proc.stderr  # --help stays light
    proc = run_cli("--help", env=env)
    assert proc.returncode == 0 and "generate" in proc.stdout
    assert "TORCH WAS IMPORTED" not in proc.stderr


def test_parser_lists_the_three_commands():
    text = build_parser().format_help()
    assert all(name in text for name in ("generate", "check", "labels"))


# ---------------------------------------------------------------------------------------------- --tokens
def _tokens_supported() -> str | None:
    root = Path(__file__).resolve().parents[2] / "probekit"
    if not (root / "tokenizer.py").exists() or not (root / "shards.py").exists():
        return "probekit/tokenizer.py or probekit/shards.py missing"
    for module in ("numpy", "tokenizers"):
        if importlib.util.find_spec(module) is None:
            return f"{module} not installed"
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            build_parser().parse_args(["generate", "--n", "1", "--tokens", "dir", "--context", "256"])
    except SystemExit:
        return "generate has no --tokens/--context options"
    return None


@pytest.mark.skipif(_tokens_supported() is not None, reason=str(_tokens_supported()))
def test_generate_tokens_writes_memory_mappable_shards(tmp_path, ref_path, capsys):
    import numpy as np

    from probekit.tokenizer import default_tokenizer

    out, shards = tmp_path / "g.jsonl", tmp_path / "tokens"
    capsys.readouterr()
    rc = main(
        [
            "generate",
            "--n",
            str(N),
            "--seed",
            str(SEED),
            "--out",
            str(out),
            "--tokens",
            str(shards),
            "--context",
            "256",
            "--json",
            "--quiet",
        ]
    )
    assert rc == 0
    json.loads(capsys.readouterr().out)
    assert out.read_bytes() == ref_path.read_bytes()  # --tokens does not change the JSONL
    meta = json.loads((shards / "meta.json").read_text())
    assert meta["context"] == 256
    files = sorted(shards.glob("shard_*.npy"))
    assert files, "no shard written"
    arrays = [np.load(f, mmap_mode="r") for f in files]
    assert all(isinstance(a, np.memmap) and a.dtype == np.uint16 and a.ndim == 2 and a.shape[1] == 256 for a in arrays)
    assert sum(a.shape[0] for a in arrays) == meta["n_windows"] > 0
    # the windows are the packed stream of the records' training sequences (too-long ones dropped)
    tok = default_tokenizer()
    stream = [
        t
        for r in records_of(out)
        for seq in [tok.encode_example(r["problem"], r["solution"], r["answer"])]
        if len(seq) <= 256
        for t in seq
    ]
    flat = np.concatenate([np.asarray(a).reshape(-1) for a in arrays])
    assert flat.tolist() == stream[: flat.size]
    assert len(stream) - flat.size < 256
    assert no_temp_files(shards)


def test_library_code_never_imports_the_command_line():
    """Commands are thin adapters over library functions: no module of probekit imports ``probekit.cli``
    (only ``python -m probekit`` does), so the sweep runs its jobs as library calls."""
    import ast

    root = Path(__file__).resolve().parents[2] / "probekit"
    importers = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            if "probekit.cli" in names:
                importers.append(str(path.relative_to(root)))
    assert importers == ["__main__.py"]
