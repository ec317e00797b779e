"""Fault injection (issue 16): what a damaged input, a kill, a bad setting or a changed file must never cost.

Each class of fault, and what every test of it asserts:

- **output over input**: an output that resolves to an input (same name, relative spelling, symbolic link) is
  refused before anything is written; the input stays byte-identical;
- **one bad record**: a record that cannot be encoded (lone surrogate) or makes the job raise (whatever the
  exception) is one per-record error; the output has one line per input line;
- **interrupted writers**: a failing, interrupted or killed ``generate`` / ``eval`` leaves nothing half-written
  under a final name, an output folder is the previous set or the new one (never a mix), and the next run
  removes the temporaries a dead run left;
- **surprising defaults and bad settings**: no model named, an empty run folder, a flag out of range: a one-line
  error that names the key or the flag; ``-`` is stdout; overrides may follow flags;
- **no traceback**: every failure above exits with a status and one line on stderr (``--debug`` shows the
  traceback).

The other fault classes have modules of their own: damaged files and ``--resume`` fallback
(``test_damaged_files.py``), SIGTERM / ``kill -9`` of generate and train and the temporaries the next run removes
(``tests/unit/test_temporaries.py``), results keyed by the content of their inputs (``test_sweep_identity.py``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clitools import assert_clean_failure, records_of, run_cli
from shipped import DEFAULT_REASONER as REASONER

from probekit.cli import build_parser, main, parse_args


@pytest.fixture(scope="module")
def ref_path(tmp_path_factory) -> Path:
    """Six generated problems with their reference solutions."""
    out = tmp_path_factory.mktemp("ref") / "ref.jsonl"
    assert main(["generate", "--n", "6", "--seed", "3", "--op", "3", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, tok):
    """A randomly initialised gpt2-tiny saved as training saves one (fingerprints, family med-op4)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from probekit.checkpoint import save_checkpoint
    from probekit.modeling import build_model, load_model_config

    model = build_model(load_model_config("gpt2-tiny"), tok, seed=0).eval()
    provenance = {"training_config": {"model": {"name": "gpt2-tiny"}, "data": {"preset": "med", "max_op": 4}}}
    return save_checkpoint(model, tok, tmp_path_factory.mktemp("tiny") / "ckpt", provenance)


# ---------------------------------------------------------------------------------------------- output over input


def test_generate_failing_midway_leaves_no_file(tmp_path, capsys, monkeypatch):
    import probekit.igsm.jobs as jobs

    real = jobs.generate_records

    def failing(config, n, workers=1, start=0):
        yield from real(config, 3, 1, start)
        raise RuntimeError("generator exploded")

    monkeypatch.setattr(jobs, "generate_records", failing)
    out = tmp_path / "g.jsonl"
    assert main(["generate", "--n", "10", "--out", str(out), "--quiet"]) == 1
    assert "generator exploded" in capsys.readouterr().err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_generate_killed_midway_leaves_no_file_under_the_final_name(tmp_path):
    out = tmp_path / "big.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "probekit", "generate", "--n", "1000000", "--out", str(out), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # wait until records are being written to the temp file
            temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
            if temps and temps[0].stat().st_size > 0:
                break
            assert proc.poll() is None, "generate ended before it could be killed"
            time.sleep(0.02)
        else:
            pytest.fail("no temporary output appeared")
        assert not out.exists()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not out.exists()


@pytest.mark.parametrize("command", ["check", "labels"])
@pytest.mark.parametrize("spelling", ["same", "relative", "link"])
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(ref_path, tmp_path, command, spelling):
    """``--out`` resolving to ``--input`` (the same name, another spelling, a symbolic link) is refused before
    anything is written: exit 2, one-line error, the input byte-identical."""
    data = tmp_path / "problems.jsonl"
    data.write_bytes(ref_path.read_bytes())
    out = {"same": data, "relative": tmp_path / "sub" / ".." / "problems.jsonl", "link": tmp_path / "link.jsonl"}
    (tmp_path / "sub").mkdir()
    if spelling == "link":
        out["link"].symlink_to(data)
    proc = run_cli(command, "--input", str(data), "--out", str(out[spelling]))
    assert_clean_failure(proc, 2)
    assert "same path as the input --input" in proc.stderr
    assert data.read_bytes() == ref_path.read_bytes()


def test_an_eval_folder_that_is_the_checkpoint_is_refused():
    proc = run_cli("eval", str(REASONER), "--out", str(REASONER) + "/", "--n", "1")
    assert_clean_failure(proc, 2)
    assert "same path as the input CKPT" in proc.stderr


def test_out_dash_means_stdout():
    proc = run_cli("generate", "--n", "2", "--out", "-", "--quiet")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 2
    assert not Path("-").exists()


def test_a_byte_order_mark_does_not_cost_the_first_record(ref_path, tmp_path):
    data = tmp_path / "bom.jsonl"
    data.write_bytes(b"\xef\xbb\xbf" + ref_path.read_bytes())
    proc = run_cli("check", "--input", str(data), "--out", str(tmp_path / "v.jsonl"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "error" not in records_of(tmp_path / "v.jsonl")[0]


def test_cuda_without_a_device_is_refused_before_anything_runs():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for argv in (["probe", str(REASONER)], ["run", "experiments/smoke.yaml"]):
        proc = run_cli(*argv, "--device", "cuda")
        assert_clean_failure(proc, 2)
        assert "no CUDA device is available" in proc.stderr


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(ref_path, monkeypatch, capsys):
    import probekit.cli as cli

    def boom(args):
        raise KeyError("planted")

    monkeypatch.setattr(cli, "check_command", boom)
    assert main(["check", "--input", str(ref_path)]) == 1
    err = capsys.readouterr().err
    assert "unexpected error: KeyError" in err and "--debug" in err and "Traceback" not in err
    with pytest.raises(KeyError):
        main(["--debug", "check", "--input", str(ref_path)])


# ---------------------------------------------------------------------------------------------- one bad record
@pytest.mark.parametrize("command", ["check", "labels"])
def test_a_record_that_fails_for_any_reason_is_a_per_record_error(ref_path, tmp_path, monkeypatch, command):
    """Lone surrogates (valid JSON escapes UTF-8 cannot carry) and a job that raises on one record cost that
    record only: exit 0, one output line per input line, the others judged as usual."""
    import json

    import probekit.igsm.jobs as jobs

    records = records_of(ref_path)
    records[1]["solution"] = records[1]["solution"].replace("Define", "Define \ud800", 1)
    records[2]["problem"] = "\udc80" + records[2]["problem"]
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")  # ASCII escapes
    name = "check_record" if command == "check" else "labels_record"
    real = getattr(jobs, name)

    def flaky(record):
        if record["index"] == records[4]["index"]:
            raise RuntimeError("planted failure")
        return real(record)

    monkeypatch.setattr(jobs, name, flaky)
    out = tmp_path / "out.jsonl"
    assert main([command, "--input", str(data), "--out", str(out), "--quiet"]) == 0
    results = records_of(out)
    assert len(results) == len(records)
    if command == "check":
        assert [r["correct"] for r in results] == [True, False, False, True, False, True]
        assert "\ud800" in results[1]["first_error"]  # written as a JSON escape, read back as the text
        assert "planted failure" in results[4]["mistakes"][0]["detail"]
        assert results[4]["mistakes"][0]["kind"] == "unparseable"
    else:
        assert ["error" in r for r in results] == [False, False, True, False, True, False]
        assert "line 5: RuntimeError: planted failure" == results[4]["error"]


# ---------------------------------------------------------------------------------------------- interrupted writers
def _eval(checkpoint, out, seed):
    from probekit import evaluate_checkpoint
    from probekit.evaluate.sets import parse_sets

    sets = parse_sets("2", "med-op4", n=2, seed=seed)
    return evaluate_checkpoint(checkpoint, sets, out=out, progress=False, checks=False, max_new_tokens=8)


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_an_interrupted_eval_leaves_the_previous_output_set_whole(tiny_checkpoint, tmp_path, monkeypatch):
    """``eval --out DIR`` killed after its records: DIR is still the previous run's set (same files, same bytes),
    no new record beside an old summary, and no temporary left beside it."""
    import probekit.evaluate.run as run

    out = tmp_path / "eval"
    _eval(tiny_checkpoint, out, seed=0)
    before = _contents(out)
    assert {"records.jsonl", "eval.json", "step_fit.json"} <= before.keys()

    real = run.evaluate_sets

    def interrupted(*args, **kwargs):
        real(*args, **kwargs)  # the records are written ...
        raise KeyboardInterrupt  # ... and the run stops before the summaries

    monkeypatch.setattr(run, "evaluate_sets", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _eval(tiny_checkpoint, out, seed=1)
    assert _contents(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]

    monkeypatch.setattr(run, "evaluate_sets", real)
    _eval(tiny_checkpoint, out, seed=1)  # a finished run replaces the whole set
    after = _contents(out)
    assert after.keys() == before.keys() and after["records.jsonl"] != before["records.jsonl"]


def test_an_eval_folder_holding_other_files_is_refused_before_any_work(tiny_checkpoint, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    proc = run_cli("eval", tiny_checkpoint, "--sets", "2", "--n", "1", "--out", out, "--quiet")
    assert_clean_failure(proc, 1)
    assert "holds files this command does not write (notes.txt)" in proc.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


# ---------------------------------------------------------------------------------------------- defaults and settings
@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("schedule:\n  steps: 10\n", "names no model"),
        ("model:\n  name: gpt2-tiny\nrun:\n  out: ''\n", "run.out is empty"),
    ],
)
def test_a_training_config_that_would_surprise_is_refused(tmp_path, capsys, text, message):
    """No model named would start the paper's 86M-parameter model; an empty run.out would write into the
    current folder: both are config errors (exit 2, one line), before anything is built."""
    config = tmp_path / "config.yaml"
    config.write_text(text)
    assert main(["train", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == [config]


def test_overrides_may_follow_flags_and_unknown_flags_are_still_refused(capsys):
    parser = build_parser()
    args = parse_args(parser, ["train", "base.yaml", "--quiet", "schedule.steps=4", "optim.lr=1e-3"])
    assert args.quiet and args.overrides == ["schedule.steps=4", "optim.lr=1e-3"]
    with pytest.raises(SystemExit) as exit_info:
        parse_args(parser, ["train", "base.yaml", "--quiet", "--bogus"])
    assert exit_info.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(parser, ["check", "--input", "x.jsonl", "schedule.steps=4"])  # overrides are train's only


@pytest.mark.parametrize(
    "argv, message",
    [
        (["probe", str(REASONER), "--n-train", "0"], "--n-train must be >= 1, got 0"),
        (["probe", str(REASONER), "--n-test", "0"], "--n-test must be >= 1, got 0"),
        (["probe", str(REASONER), "--rank", "-1"], "--rank must be >= 0, got -1"),
        (["eval", str(REASONER), "--n", "-1"], "--n must be >= 0, got -1"),
        (["eval", str(REASONER), "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["eval", str(REASONER), "--preset", "med-op4-ip6"], "--preset names no family the generator can draw"),
        (["probe", str(REASONER), "--preset", "hard-op0"], "--preset names no family the generator can draw"),
    ],
)
def test_a_setting_out_of_range_names_its_flag(argv, message):
    proc = run_cli(*argv)
    assert_clean_failure(proc, 2)
    assert message in proc.stderr


def test_shards_with_a_context_shorter_than_every_problem_are_an_error(tmp_path):
    """``generate --tokens DIR --context 16``: every problem is longer than a window, so no training data could
    come out; an error (not exit 0 with no windows), and neither the records nor meta.json are written."""
    proc = run_cli("generate", "--n", "3", "--out", tmp_path / "p.jsonl", "--tokens", tmp_path / "tok", "--context", 16)
    assert_clean_failure(proc, 1)
    assert "longer than the context of 16 tokens" in proc.stderr
    assert not (tmp_path / "p.jsonl").exists() and not (tmp_path / "tok" / "meta.json").exists()


@pytest.mark.slow
def test_eval_killed_at_a_random_moment_leaves_one_whole_set_and_the_rerun_cleans_up(tiny_checkpoint, tmp_path):
    """``kill -9`` of ``probekit eval --out DIR`` at a random moment (seeded): DIR is the previous set or the
    new one, whole; the next run leaves no temporary of the killed one."""
    import json
    import random

    out = tmp_path / "eval"
    _eval(tiny_checkpoint, out, seed=0)
    before = _contents(out)
    argv = [sys.executable, "-m", "probekit", "eval", str(tiny_checkpoint), "--sets", "2,3", "--n", "8"]
    argv += ["--seed", "1", "--out", str(out), "--quiet", "--max-new-tokens", "8", "--skip-checks"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(random.Random(16).uniform(1.0, 8.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    now = _contents(out)
    if now != before:  # the run finished before the kill: the whole new set
        assert now.keys() == before.keys()
        assert len(now["records.jsonl"].splitlines()) == 16 and json.loads(now["eval.json"])["sets"]
    _eval(tiny_checkpoint, out, seed=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]
