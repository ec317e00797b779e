"""``probekit run``: config checks, job expansion and ids, the results store, kill-and-restart, executors."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("pandas")

import pandas as pd  # noqa: E402
from shipped import DEFAULT_REASONER  # noqa: E402

from probekit.cli import main  # noqa: E402
from probekit.configs import ConfigError  # noqa: E402
from probekit.sweep.config import load_sweep, parse_sweep  # noqa: E402
from probekit.sweep.execute import run_jobs  # noqa: E402
from probekit.sweep.jobs import expand, select  # noqa: E402
from probekit.sweep.store import ResultsStore  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHIPPED = DEFAULT_REASONER


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from probekit.checkpoint import save_checkpoint
    from probekit.modeling import build_model, load_model_config
    from probekit.tokenizer import default_tokenizer

    tok = default_tokenizer()
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    model = build_model(load_model_config("gpt2-tiny"), tok, seed=1)
    save_checkpoint(model, tok, folder, {"data": {"preset": "med"}})
    return folder


def _sweep(tmp_path, ckpt, **sections) -> Path:
    data = {
        "name": "t",
        "results": str(tmp_path / "res"),
        "device": "cpu",
        "checkpoints": {"tiny": str(ckpt)},
        "accuracy": {"sets": ["1", "2"], "n": 4},
        "probe": {
            "tasks": ["nece"],
            "ranks": [0],
            "models": ["pretrained", "random-init"],
            "n_train": 6,
            "n_test": 4,
            "steps": 5,
            "batch_size": 16,
            "op": 2,
        },
    }
    data.update(sections)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in data.items() if v is not None}))
    return path


# ---------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "data, message",
    [
        ({"checkpoint": {}}, "unknown key 'checkpoint' (did you mean 'checkpoints'?)"),
        ({"probe": {"tasks": ["nece", "nec"]}}, "probe.tasks: unknown value 'nec'"),
        ({"probe": {"models": ["trained"]}}, "allowed: pretrained, random-init"),
        ({"probe": {"test_sets": ["ood"]}}, "'ood' is not id, K (op = K) or rK"),
        ({"probe": {"steps": "many"}}, "probe.steps expects an int"),
        ({"accuracy": {"sets": ["oops"]}}, "unknown evaluation set 'oops'"),
        ({"accuracy": {"n": 0}}, "accuracy.n must be >= 1"),
        ({"depth": {"ranks": [-1]}}, "depth.ranks must be >= 0"),
        (
            {"probe": {"ranks": [0], "by_rank": {8: {"tasks": ["nece"]}}}},
            "by_rank (keys: probe.ranks): unknown value '8'",
        ),
        ({"probe": {"tasks": ["nece"], "ranks": [8], "by_rank": {8: {"tasks": ["dep"]}}}}, "by_rank.8.tasks (tasks of"),
        ({"probe": {"by_rank": {"eight": {}}}}, "probe.by_rank expects a mapping of (an int)"),
        ({"probe": {"ranks": [8], "by_rank": {8: {"stepz": 5}}}}, "probe.by_rank: RankSettings: unknown key 'stepz'"),
        ({"probe": {"ranks": [8], "by_rank": {8: {"steps": 0}}}}, "probe.by_rank.8.steps must be >= 1"),
        ({"device": "tpu"}, "device expects 'auto' | 'cpu' | 'cuda'"),
        ({"accuracy": {"preset": "med-op4-ip6"}}, "accuracy.preset: preset 'med-op4-ip6' bounds the instance"),
        ({"probe": {"preset": "easy"}}, "probe.preset: preset must be one of med, hard or a restriction"),
    ],
)
def test_bad_config_names_the_key_and_allowed_values(data, message):
    base = {"name": "x", "checkpoints": {"a": str(SHIPPED)}, "accuracy": {}}
    with pytest.raises(ConfigError) as err:
        parse_sweep({**base, **data})
    assert message in str(err.value)


def test_a_restricted_family_is_a_preset_of_the_jobs(tmp_path, tiny_ckpt):
    """``preset: med-op4-ip12`` (as ``probekit eval`` / ``probe --preset``): its sets and the jobs' flags."""
    probe = {"tasks": ["nece"], "ranks": [0], "models": ["pretrained"], "steps": 5, "preset": "med-op4-ip12"}
    accuracy = {"sets": ["id"], "n": 4, "preset": "med-op4-ip12"}
    jobs = expand(load_sweep(_sweep(tmp_path, tiny_ckpt, probe=probe, accuracy=accuracy)))
    acc = [j for j in jobs if j.kind == "accuracy"]
    assert sorted(j.params["set"] for j in acc) == ["4", "unforced"]  # id: op = the family's max op (med: 15)
    for job in [*acc, next(j for j in jobs if j.kind == "probe")]:
        argv = job.argv(tiny_ckpt, tmp_path / "w")
        assert argv[argv.index("--preset") + 1] == "med-op4-ip12"


def test_by_rank_gives_a_rank_its_own_tasks_and_budget(tmp_path, tiny_ckpt):
    own = {"tasks": ["nece"], "steps": 7, "batch_size": 4, "lr": 0.005, "amp": "bf16"}
    probe = {"tasks": ["nece", "dep"], "ranks": [0, 8], "models": ["pretrained"], "steps": 5, "batch_size": 16}
    probe["by_rank"] = {8: own}
    jobs = [j for j in expand(load_sweep(_sweep(tmp_path, tiny_ckpt, probe=probe))) if j.kind == "probe"]
    got = sorted((j.params["task"], j.params["rank"], j.params["steps"], j.params["batch_size"]) for j in jobs)
    assert got == [("dep", 0, 5, 16), ("nece", 0, 5, 16), ("nece", 8, 7, 4)]
    every = expand(load_sweep(_sweep(tmp_path, tiny_ckpt, probe={**probe, "by_rank": {}})))
    linear = {j.job_id for j in jobs if j.params["rank"] == 0}
    assert linear < {j.job_id for j in every if j.kind == "probe"}  # the other ranks' jobs are unchanged
    ranked = next(j for j in jobs if j.params["rank"] == 8)
    argv = ranked.argv(tiny_ckpt, tmp_path / "w")
    assert argv[argv.index("--steps") + 1] == "7" and argv[argv.index("--lr") + 1] == "0.005"
    assert argv[argv.index("--amp") + 1] == "bf16"


def test_missing_checkpoint_and_bad_training_config_are_refused_before_running(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "checkpoints": {"a": str(tmp_path / "nope")}, "accuracy": {}}))
    assert main(["run", str(path), "--results", str(tmp_path / "r")]) == 2
    assert "checkpoints.a" in capsys.readouterr().err and not (tmp_path / "r").exists()
    path.write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "train": {"t": {"config": "experiments/train/cpu-tiny.yaml", "overrides": ["optim.lrr=1"]}},
                "accuracy": {},
            }
        )
    )
    with pytest.raises(ConfigError, match=r"train\.t: .*unknown key 'optim.lrr'"):
        load_sweep(path)


def test_every_experiment_config_checks_and_expands():
    configs = sorted((REPO / "experiments").glob("*.yaml"))
    assert (REPO / "experiments" / "smoke.yaml") in configs and len(configs) >= 5
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        for path in configs:
            jobs = expand(load_sweep(path))
            assert jobs, path
            assert len({j.job_id for j in jobs}) == len(jobs)
    finally:
        os.chdir(cwd)


# ---------------------------------------------------------------------------- expansion
def test_grid_expansion_and_stable_ids(tmp_path, tiny_ckpt):
    cfg = load_sweep(
        _sweep(
            tmp_path,
            tiny_ckpt,
            probe={
                "tasks": ["nece", "dep"],
                "layers": [0, -1],
                "ranks": [0, 8],
                "models": ["pretrained"],
                "test_sets": ["id", "r5"],
            },
        )
    )
    jobs = expand(cfg)
    kinds = [j.kind for j in jobs]
    assert kinds.count("accuracy") == 2 and kinds.count("probe") == 2 * 2 * 2 * 2
    assert [j.job_id for j in expand(load_sweep(tmp_path / "sweep.yaml"))] == [j.job_id for j in jobs]
    changed = expand(
        parse_sweep({**yaml.safe_load((tmp_path / "sweep.yaml").read_text()), "accuracy": {"sets": ["1", "2"], "n": 5}})
    )
    assert {j.job_id for j in changed if j.kind == "probe"} == {j.job_id for j in jobs if j.kind == "probe"}
    assert not {j.job_id for j in changed if j.kind == "accuracy"} & {j.job_id for j in jobs if j.kind == "accuracy"}
    reask = next(j for j in jobs if j.kind == "probe" and j.params["test_set"] == "r5")
    argv = reask.argv(tiny_ckpt, tmp_path / "w")
    assert argv[argv.index("--test-op") + 1] == "5" and "--reask" in argv and "--amp" not in argv
    # a non-default autocast is a setting of the result: new ids, passed to the command
    data = yaml.safe_load((tmp_path / "sweep.yaml").read_text())
    bf16 = [j for j in expand(parse_sweep({**data, "probe": {**data["probe"], "amp": "bf16"}})) if j.kind == "probe"]
    assert not {j.job_id for j in bf16} & {j.job_id for j in jobs if j.kind == "probe"}
    argv = bf16[0].argv(tiny_ckpt, tmp_path / "w")
    assert argv[argv.index("--amp") + 1] == "bf16"
    grouped = [
        j for j in expand(parse_sweep({**data, "probe": {**data["probe"], "batches": "problems"}})) if j.kind == "probe"
    ]
    assert not {j.job_id for j in grouped} & {j.job_id for j in jobs if j.kind == "probe"} and "--batches" not in argv
    argv = grouped[0].argv(tiny_ckpt, tmp_path / "w")
    assert argv[argv.index("--batches") + 1] == "problems"


def test_dry_run_json_lists_jobs_with_stable_ids(tmp_path, tiny_ckpt, capsys):
    path = _sweep(tmp_path, tiny_ckpt)
    assert main(["run", str(path), "--dry-run", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [item["job_id"] for item in listing] == [j.job_id for j in expand(load_sweep(path))]
    assert all(item["command"].startswith("probekit ") and item["done"] is False for item in listing)
    assert not (tmp_path / "res").exists()  # a dry run writes nothing


def test_training_jobs_come_first_and_their_checkpoint_is_named(tmp_path, tiny_ckpt):
    cfg = load_sweep(
        _sweep(
            tmp_path,
            tiny_ckpt,
            checkpoints=None,
            train={
                "mini": {
                    "config": str(REPO / "experiments/train/cpu-tiny.yaml"),
                    "overrides": ["schedule.steps=4"],
                    "seeds": [0, 1],
                }
            },
        )
    )
    jobs = expand(cfg)
    train = [j for j in jobs if j.kind == "train"]
    assert [j.checkpoint for j in train] == ["mini-s0", "mini-s1"]
    assert jobs[:2] == train
    assert all(j.depends_on in {t.job_id for t in train} for j in jobs[2:])
    assert "model.seed=1" in train[1].argv(None, tmp_path)


def test_a_config_key_added_later_keeps_the_ids_of_finished_train_jobs_while_unset(tmp_path, tiny_ckpt):
    def train_job(*overrides):
        train = {"mini": {"config": str(REPO / "experiments/train/cpu-tiny.yaml"), "overrides": list(overrides)}}
        cfg = load_sweep(_sweep(tmp_path, tiny_ckpt, checkpoints=None, probe=None, train=train))
        return next(j for j in expand(cfg) if j.kind == "train")

    unset, grown = (
        train_job(f"model.init_from={tiny_ckpt}"),
        train_job(f"model.init_from={tiny_ckpt}", "model.grow_after=[0]"),
    )
    assert "grow_after" not in unset.params["resolved"]["model"]  # the id a store made before the key existed
    assert "attention" not in unset.params["resolved"]["run"] and "unpack" not in unset.params["resolved"]["data"]
    unpacked = train_job(f"model.init_from={tiny_ckpt}", "data.unpack=true")
    assert unpacked.params["resolved"]["data"]["unpack"] is True and unpacked.job_id != unset.job_id
    assert grown.params["resolved"]["model"]["grow_after"] == [0] and grown.job_id != unset.job_id
    eager = train_job(f"model.init_from={tiny_ckpt}", "run.attention=eager")
    assert eager.params["resolved"]["run"]["attention"] == "eager" and eager.job_id != unset.job_id


def test_training_grid_makes_one_run_per_combination(tmp_path, tiny_ckpt):
    cfg = load_sweep(
        _sweep(
            tmp_path,
            tiny_ckpt,
            checkpoints=None,
            probe=None,
            train={
                "mini": {
                    "config": str(REPO / "experiments/train/cpu-tiny.yaml"),
                    "seeds": [3],
                    "grid": {"data.max_op": [2, None], "model.init_from": [None, str(tiny_ckpt)]},
                }
            },
        )
    )
    train = [j for j in expand(cfg) if j.kind == "train"]
    assert [j.checkpoint for j in train] == [
        "mini-max_op-2-init_from-none",
        "mini-max_op-2-init_from-tiny",
        "mini-max_op-none-init_from-none",
        "mini-max_op-none-init_from-tiny",
    ]
    resolved = [(j.params["resolved"]["data"]["max_op"], j.params["resolved"]["model"]["init_from"]) for j in train]
    assert resolved == [(2, None), (2, str(tiny_ckpt)), (None, None), (None, str(tiny_ckpt))]
    assert all(j.params["resolved"]["model"]["seed"] == 3 for j in train)
    accuracy = [j for j in expand(cfg) if j.kind == "accuracy"]
    assert len(accuracy) == 2 * 4 and {j.depends_on for j in accuracy} == {j.job_id for j in train}


def test_every_job_runs_the_spec_its_command_line_parses_into(tmp_path, tiny_ckpt):
    """A job is a library call; the command ``--dry-run`` shows for it parses into the very same spec."""
    from probekit.causal import intervene_command, patch_command
    from probekit.cli import build_parser
    from probekit.evaluate import command as eval_command
    from probekit.probe import command as probe_command
    from probekit.sweep.runners import job_spec
    from probekit.train import command as train_command

    tiny = str(REPO / "experiments/train/cpu-tiny.yaml")
    path = _sweep(
        tmp_path,
        tiny_ckpt,
        train={
            "base": {"config": tiny, "overrides": ["schedule.steps=3"]},
            "ft": {"config": tiny, "grid": {"model.init_from": ["train:base"]}},
        },
        accuracy={
            "sets": ["1", "r2", "h1"],
            "n": 4,
            "samples": 2,
            "temperature": 0.5,
            "batch_size": 8,
            "decodings": ["greedy", "beam-sample"],
        },
        probe={
            "tasks": ["nece", "dep"],
            "pair_pool": "slots",
            "layers": [0, "all"],
            "ranks": [0],
            "test_sets": ["id", "r5", "4"],
            "amp": "bf16",
            "micro_batch_size": 4,
            "op": 2,
            "preset": "med",
            "mdl": True,
            "bootstrap": 0,
        },
        mistakes={"sets": ["2", "r3"], "n_eval": 3, "max_new_tokens": 30, "models": ["random-init"]},
        depth={"ranks": [0, 2], "test_sets": ["r4"], "batches": "problems"},
        patch={"pair_kinds": ["value", "query"], "ops": [2], "n": 3, "components": ["resid_post", "mlp_out"],
               "roles": ["changed", "all"], "generate": False, "batch_size": 8, "direction": "noise"},
        intervene={"layers": ["ln_final", 1], "modes": ["ablate", "steer"], "strength": -2.0, "n_random": 3,
                   "sets": ["2", "r3"], "n": 4, "max_new_tokens": 40, "batch_size": 4, "ablate_value": "zero"},
    )  # fmt: skip
    jobs = expand(load_sweep(path))
    kinds = {"train", "accuracy", "probe", "mistakes", "depth", "patch", "intervene"}
    assert {j.kind for j in jobs} == kinds
    intervene = [job_spec(j, tmp_path / "ckpt", tmp_path) for j in jobs if j.kind == "intervene"]
    assert {(s.layer, s.mode, s.strength, s.ablate_value) for s in intervene} == {
        (layer, "ablate", 1.0, "zero") for layer in ("ln_final", "1")
    } | {(layer, "steer", -2.0, "mean") for layer in ("ln_final", "1")}
    accuracy = [job_spec(j, tmp_path / "ckpt", tmp_path) for j in jobs if j.kind == "accuracy"]
    assert {(s.sets, s.decoding) for s in accuracy} == {
        (token, decoding) for token in ("1", "r2", "h1") for decoding in ("greedy", "beam-sample")
    }
    assert {job_spec(j, tmp_path / "ckpt", tmp_path).pair_pool for j in jobs if j.kind == "probe"} == {"slots"}
    assert {job_spec(j, tmp_path / "ckpt", tmp_path).batches for j in jobs if j.kind in ("probe", "depth")} == {
        "examples",
        "problems",
    }
    commands = {
        "train": train_command,
        "eval": eval_command,
        "probe": probe_command,
        "patch": patch_command,
        "intervene": intervene_command,
    }
    parser = build_parser()
    for job in jobs:
        checkpoint = None if job.kind == "train" and not job.depends_on else tmp_path / "ckpt"
        for device in (None, "cpu"):
            out = tmp_path / "work" / job.job_id
            args = parser.parse_args(job.argv(checkpoint, out, device))
            assert commands[args.command].build_spec(args) == job_spec(job, checkpoint, out, device), job.job_id


@pytest.mark.slow
def test_a_probe_job_is_a_library_call_returning_its_rows(tmp_path, tiny_ckpt):
    from probekit.probe.experiment import ProbeSpec, run_probe
    from probekit.sweep.runners import job_rows, job_spec

    cfg = load_sweep(
        _sweep(
            tmp_path,
            tiny_ckpt,
            accuracy=None,
            probe={
                "tasks": ["nece"],
                "ranks": [0],
                "models": ["pretrained"],
                "test_sets": ["r3"],
                "n_train": 6,
                "n_test": 4,
                "steps": 5,
                "batch_size": 16,
                "op": 2,
            },
        )
    )
    (job,) = expand(cfg)
    spec = job_spec(job, tiny_ckpt, tmp_path / "w", "cpu")
    assert isinstance(spec, ProbeSpec) and (spec.test_op, spec.reask, spec.progress) == (3, True, False)
    (row,) = job_rows(job, spec)
    assert row["test_set"] == "r3" and row["task"] == "nece" and 0 <= row["accuracy"] <= 1
    # the function itself, without a sweep: it returns the rows it writes
    result = run_probe(
        ProbeSpec(
            str(tiny_ckpt),
            tasks="nece,dep",
            models=("pretrained",),
            rank=0,
            steps=5,
            n_train=6,
            n_test=4,
            op=2,
            device="cpu",
            progress=False,
            out=str(tmp_path / "d"),
        )
    )
    lines = (tmp_path / "d" / "results.jsonl").read_text().splitlines()
    assert result.records() == [json.loads(x) for x in lines]
    assert [r["task"] for r in result.records()] == ["nece", "dep"]
    assert (tmp_path / "d" / "probes" / "pretrained-dep-ln_final" / "probe.json").exists()


def test_train_spec_variants_label_each_run():
    from probekit.sweep.config import TrainSpec

    spec = TrainSpec(
        "c.yaml", ["optim.lr=1"], grid={"data.n_problems": [10, None], "model.init_from": ["a/b"]}, seeds=[0, 1]
    )
    names = [name for name, _ in spec.variants("run")]
    assert names == [
        "run-n_problems-10-init_from-b-s0",
        "run-n_problems-10-init_from-b-s1",
        "run-n_problems-none-init_from-b-s0",
        "run-n_problems-none-init_from-b-s1",
    ]
    assert spec.variants("run")[3][1] == [
        "optim.lr=1",
        "data.n_problems=null",
        "model.init_from=a/b",
        "model.seed=1",
        "data.seed=1",
    ]


# ---------------------------------------------------------------------------- running
def _expected_rows(store: ResultsStore, jobs) -> None:
    frame = store.read()
    assert sorted(frame["job_id"]) == sorted(j.job_id for j in jobs)  # exactly one row per job
    assert sorted(p.stem for p in store.jobs_dir.glob("*.parquet")) == sorted(j.job_id for j in jobs)


def test_rows_name_the_family_the_checkpoint_was_trained_on(tmp_path, tiny_ckpt):
    """``train_preset`` is the family as training names it (``med-op4-ip12``), not only its base."""
    import shutil

    from probekit.sweep.execute import checkpoint_info

    assert checkpoint_info(str(tiny_ckpt))["train_preset"] == "med"
    restricted = tmp_path / "restricted"
    shutil.copytree(tiny_ckpt, restricted)
    data = {"preset": "med", "max_op": 4, "max_edge": 12}
    (restricted / "probekit.json").write_text(json.dumps({"training_config": {"data": data}}))
    info = checkpoint_info(str(restricted))
    assert (info["train_preset"], info["train_max_op"]) == ("med-op4-ip12", 4)
    assert checkpoint_info(str(REPO / SHIPPED))["train_preset"] == "med-op4-ip12"


@pytest.mark.slow
def test_sweep_runs_stores_rows_with_provenance_and_skips_finished_jobs(tmp_path, tiny_ckpt, capsys):
    path = _sweep(tmp_path, tiny_ckpt)
    assert main(["run", str(path), "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    jobs = expand(load_sweep(path))
    assert summary["finished"] == len(jobs) == 4 and summary["already_done"] == 0
    store = ResultsStore(tmp_path / "res")
    _expected_rows(store, jobs)
    frame = store.read()
    digest = hashlib.sha256((tiny_ckpt / "model.safetensors").read_bytes()).hexdigest()
    assert set(frame["checkpoint_sha256"]) == {digest}
    assert frame["revision"].str.startswith("0.").all()
    assert set(frame["model"]) == {"pretrained", "random-init"}
    acc = frame[frame.kind == "accuracy"].set_index("set")
    assert set(acc.index) == {"op=1", "op=2"} and ((acc.accuracy >= 0) & (acc.accuracy <= 1)).all()
    probe = frame[frame.kind == "probe"]
    assert (probe["task"] == "nece").all() and (probe["test_set"] == "id").all()
    assert json.loads(probe["job_config"].iloc[0])["params"]["task"] == "nece"
    assert (frame["n_layer"] == 2).all()
    # a second run skips everything
    assert main(["run", str(path), "--json", "--quiet"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["already_done"] == 4 and again["finished"] == 0


@pytest.mark.slow
def test_killed_sweep_restarts_with_exactly_one_row_per_job(tmp_path, tiny_ckpt):
    path = _sweep(tmp_path, tiny_ckpt, accuracy={"sets": ["1", "2", "3"], "n": 4})
    jobs = expand(load_sweep(path))
    store = ResultsStore(tmp_path / "res")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "probekit", "run", str(path), "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(store.finished()) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(store.finished())
    assert 1 <= killed_at < len(jobs), "the sweep must be killed in the middle"
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    _expected_rows(store, jobs)


def test_a_failed_job_is_recorded_and_retried(tmp_path, tiny_ckpt):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_ckpt, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    path = _sweep(tmp_path, broken, probe=None, accuracy={"sets": ["1"], "n": 2})
    jobs = expand(load_sweep(path))
    summary = run_jobs(jobs, tmp_path / "res", device="cpu", progress=False)
    store = ResultsStore(tmp_path / "res")
    assert list(summary.failed) == [jobs[0].job_id] and jobs[0].job_id in store.failures()
    assert "accuracy job failed" in store.failures()[jobs[0].job_id]
    assert "Traceback" in (tmp_path / "res" / "work" / jobs[0].job_id / "log.txt").read_text()
    assert len(store.read()) == 0
    shutil.copy(tiny_ckpt / "model.safetensors", broken / "model.safetensors")
    summary = run_jobs(jobs, tmp_path / "res", device="cpu", progress=False)
    assert summary.finished == [jobs[0].job_id] and not store.failures()
    _expected_rows(store, jobs)


@pytest.mark.slow
def test_two_local_workers_and_the_submitit_debug_cluster(tmp_path, tiny_ckpt):
    pytest.importorskip("submitit")
    path = _sweep(tmp_path, tiny_ckpt, probe=None)
    jobs = expand(load_sweep(path))
    summary = run_jobs(jobs, tmp_path / "res", device="cpu", workers=2, progress=False)
    assert sorted(summary.finished) == sorted(j.job_id for j in jobs) and not summary.failed
    local = ResultsStore(tmp_path / "res").read().set_index("job_id").sort_index()
    summary = run_jobs(
        jobs, tmp_path / "sub", device="cpu", executor="submitit", cluster={"cluster": "debug"}, progress=False
    )
    assert not summary.failed, summary.failed
    remote = ResultsStore(tmp_path / "sub").read().set_index("job_id").sort_index()
    pd.testing.assert_series_equal(local["accuracy"], remote["accuracy"])


def test_fine_tuning_a_run_of_the_sweep_waits_for_it_and_records_its_checkpoint(tmp_path, tiny_ckpt):
    tiny = str(REPO / "experiments/train/cpu-tiny.yaml")
    short = ["schedule.steps=3", "schedule.warmup_steps=1", "run.checkpoint_every=3", "run.log_every=1"]
    path = _sweep(
        tmp_path,
        tiny_ckpt,
        checkpoints=None,
        probe=None,
        accuracy={"sets": ["1"], "n": 2},
        train={
            "base": {"config": tiny, "overrides": [*short, "run.eval_every=2", "run.eval_problems=2"]},
            "ft": {"config": tiny, "overrides": short, "grid": {"model.init_from": ["train:base"]}},
        },
    )
    jobs = expand(load_sweep(path))
    base, ft = [j for j in jobs if j.kind == "train"]
    assert ft.depends_on == base.job_id and ft.checkpoint == "ft-init_from-train-base"
    ft_only = [j for j in jobs if not (j.kind == "accuracy" and j.checkpoint == "base")]
    assert [j.kind for j in select(ft_only, ["accuracy"])] == ["train", "train", "accuracy"]  # base transitively
    summary = run_jobs(jobs, tmp_path / "res", device="cpu", progress=False)
    assert not summary.failed and not summary.skipped, (summary.failed, summary.skipped)
    frame = ResultsStore(tmp_path / "res").read()
    rows = frame[frame.kind == "accuracy"].set_index("checkpoint")
    base_ckpt = frame[(frame.kind == "train") & (frame.checkpoint == "base")]["checkpoint_path"].item()
    assert rows.loc["ft-init_from-train-base", "train_init_from"] == base_ckpt
    assert pd.isna(rows.loc["base", "train_init_from"])
    # a train row carries its learning curve: 3 loss points and the evaluations at steps 2 and 3
    train = frame[frame.kind == "train"].set_index("checkpoint")
    curve = json.loads(train.loc["base", "curve"])
    assert [p["step"] for p in curve if p.get("event") != "eval"] == [1, 2, 3]
    assert [p["step"] for p in curve if p.get("event") == "eval"] == [2, 3]
    assert json.loads(train.loc["base", "curve_accuracy_by_op"]).keys() == {"2"}
    assert train.loc["base", "curve_accuracy"] == curve[-1]["accuracy"]
    assert pd.isna(train.loc["ft-init_from-train-base", "curve_accuracy"])  # no run.eval_every there


def test_patch_and_intervene_jobs_store_rows_and_draw_their_figures(tmp_path, tiny_ckpt, capsys):
    """The causal kinds run as sweep jobs (issue 17): rows in the store, figures from the store."""
    from probekit.figures.registry import render

    path = _sweep(
        tmp_path,
        tiny_ckpt,
        accuracy=None,
        probe=None,
        patch={"pair_kinds": ["value"], "ops": [2], "n": 2, "seeds": [0, 1], "roles": ["changed", "all"],
               "generate": False},
        intervene={"n_random": 2, "n_train": 4, "n_test": 3, "steps": 5, "sets": ["2"], "n": 2,
                   "max_new_tokens": 30, "bootstrap": 0},
    )  # fmt: skip
    assert main(["run", str(path), "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["finished"] == 3 and not summary["failed"]
    frame = ResultsStore(tmp_path / "res").read()
    patch = frame[frame["kind"] == "patch"]
    assert set(patch["role"]) == {"changed", "all"} and set(patch["seed"]) == {0, 1}
    every = patch.loc[patch["role"] == "all", "restored"].dropna()
    assert len(every) and ((every - 1.0).abs() < 1e-3).all()  # every position patched: the clean run
    intervene = frame[frame["kind"] == "intervene"]
    assert sorted(intervene["direction"].value_counts().items()) == [("none", 1), ("probe", 1), ("random", 2)]
    results = {r.name: r for r in render(frame, ["patch_heatmap", "intervention_effects"], tmp_path / "fig")}
    assert not results["patch_heatmap"].skipped, results["patch_heatmap"].skipped
    assert not results["intervention_effects"].skipped, results["intervention_effects"].skipped
    text = (tmp_path / "fig" / "patch_heatmap.txt").read_text()
    assert "n=4" in text  # 2 pairs x 2 seeds: pairs of different jobs are told apart
