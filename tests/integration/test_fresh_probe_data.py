"""Fresh probe training data (the paper's "fresh data on the fly", App. E): ``FreshData`` epochs, the V-probe fit
that reads epoch after epoch, the control task on fresh epochs, ``probekit probe --fresh`` and the sweep key."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("pandas")

from probekit.checkpoint import save_checkpoint  # noqa: E402
from probekit.igsm.generate import GenerationConfig  # noqa: E402
from probekit.probe import stats  # noqa: E402
from probekit.probe.data import FreshData, examples_from_config, train_test_data  # noqa: E402
from probekit.probe.layers import control_task, control_train_data  # noqa: E402
from probekit.probe.vprobe import VProbe  # noqa: E402

CONFIG = GenerationConfig("med", op=2, seed=3, split="train")


class CountingFresh(FreshData):
    """FreshData that records which epochs a fit asked for."""

    def epoch(self, k):
        self.asked.append(k)
        return super().epoch(k)


def _fresh(n=3, cls=FreshData, task="nece"):
    first = examples_from_config(CONFIG, n, tasks=task, seed=3)
    data = cls(first, CONFIG, n, {"tasks": task, "seed": 3})
    if cls is CountingFresh:
        data.asked = []
    return data


def test_every_epoch_holds_the_next_n_problems():
    data = _fresh(n=3)
    problems = [sorted(set(data.epoch(k).meta["problem"])) for k in range(3)]
    assert problems[0] == sorted(set(data.first.meta["problem"]))
    for k, indices in enumerate(problems):
        assert set(indices) <= set(range(3 * k, 3 * k + 3)) and indices  # problems k n .. (k+1) n - 1
    again = examples_from_config(CONFIG, 3, start=3, tasks="nece", seed=3)
    assert [list(x) for x in data.epoch(1).ids] == [list(x) for x in again.ids]  # the same examples, not a draw


def test_task_and_relabel_apply_to_every_epoch():
    mixed = FreshData(
        examples_from_config(CONFIG, 2, tasks="nece,dep", seed=3), CONFIG, 2, {"tasks": "nece,dep", "seed": 3}
    )
    nece = mixed.task("nece")
    assert set(nece.epoch(2).meta["task"]) == {"nece"} and set(nece.first.meta["task"]) == {"nece"}
    flipped = nece.relabel(lambda d: 1 - np.asarray(d.labels))
    assert (flipped.epoch(1).labels == 1 - nece.epoch(1).labels).all()
    assert (flipped.labels == 1 - nece.labels).all()  # the first epoch too (what a fit reads first)


def test_batches_of_fresh_data_never_mix_epochs():
    from probekit.probe.vprobe import _fresh_batches

    data = _fresh(n=2)
    sizes = [len(data.epoch(k)) for k in range(4)]
    batches = _fresh_batches(data, 4, np.random.default_rng(0))
    seen: dict[int, list] = {}
    for _ in range(sum(max(n // 4, 1) for n in sizes[:3])):
        epoch, ids, _, labels, idx = next(batches)
        assert len(ids) == sizes[epoch] and len(idx) == min(4, sizes[epoch]) and idx.max() < sizes[epoch]
        seen.setdefault(epoch, []).extend(idx.tolist())
    assert sorted(seen) == [0, 1, 2]
    for epoch, indices in seen.items():
        assert len(set(indices)) == len(indices)  # no example twice within an epoch
        assert len(indices) == max(sizes[epoch] // 4, 1) * min(4, sizes[epoch])  # the short last batch dropped


def test_a_fit_reads_new_epochs(gpt2):
    data = _fresh(n=2, cls=CountingFresh)
    steps = 12
    probe = VProbe("nece", rank=2, steps=steps, batch_size=4, seed=0).fit(gpt2, data)
    batches, epochs = 0, 0
    while batches < steps:  # batches per epoch: floor(n / 4), at least one
        batches += max(len(data.epoch(epochs)) // 4, 1)
        epochs += 1
    assert probe.epochs_ == epochs > 1
    assert data.asked[:epochs] == list(range(epochs))
    fixed = VProbe("nece", rank=2, steps=steps, batch_size=4, seed=0).fit(gpt2, data.first)
    assert fixed.epochs_ == 1  # cycling the first epoch reads no other
    assert probe.history_ != fixed.history_


def test_control_labels_of_fresh_epochs_follow_the_same_key_map():
    train = _fresh(n=3)
    test = examples_from_config(GenerationConfig("med", op=2, seed=4, split="test"), 2, tasks="nece", seed=4)
    c_train, _ = control_task(train, test, "nece", seed=5)
    control = control_train_data(train, c_train, "nece", seed=5)
    prior = stats.label_prior(train.labels, 2)
    later = control.epoch(2)
    expected = stats.control_labels(stats.control_keys(later.meta, "nece"), prior, 5, "nece")
    assert (later.labels == expected).all()
    assert (control.labels == c_train).all()


def test_train_test_data_fresh_returns_fresh_training_data():
    train, test = train_test_data("med", "pq", 2, 2, seed=1, op=2, tasks="nece", fresh=True, progress=lambda k: None)
    assert isinstance(train, FreshData) and not isinstance(test, FreshData)
    assert "progress" not in train.build  # later epochs build quietly
    assert set(train.epoch(1).meta["problem"]) <= {2, 3}


def test_fresh_probe_run_records_epochs(tmp_path, tok, gpt2, probe_cli):
    ckpt = save_checkpoint(gpt2, tok, tmp_path / "ckpt", {"data": {"preset": "med"}})
    options = "--task nece --rank 2 --steps 12 --batch-size 8 --n-train 2 --n-test 2 --op 2 --baseline none".split()
    (fresh,), _ = probe_cli(["probe", str(ckpt), *options, "--fresh", "--json", "--quiet"])
    (cycled,), _ = probe_cli(["probe", str(ckpt), *options, "--json", "--quiet"])
    assert fresh["fresh"] is True and fresh["epochs"] > 1
    assert cycled["fresh"] is False and cycled["epochs"] == 1


def test_fresh_needs_a_v_probe(tmp_path):
    from clitools import assert_clean_failure, run_cli

    from probekit.configs import SettingError
    from probekit.probe.experiment import ProbeSpec

    with pytest.raises(SettingError, match="rank > 0"):
        ProbeSpec(str(tmp_path), rank=0, fresh=True).check()
    result = run_cli("probe", tmp_path, "--rank", "0", "--fresh")
    assert_clean_failure(result, 2)
    assert "--fresh needs rank > 0" in result.stderr


def test_sweep_key_fresh_reaches_the_job_and_its_command_line(tmp_path):
    from probekit.sweep.config import ConfigError, parse_sweep
    from probekit.sweep.jobs import expand
    from probekit.sweep.runners import job_spec

    raw = {
        "name": "f",
        "results": str(tmp_path / "r"),
        "checkpoints": {"m": str(tmp_path)},
        "probe": {"tasks": ["nece"], "models": ["pretrained"], "ranks": [8], "fresh": True, "n_train": 5},
    }
    (job,) = [j for j in expand(parse_sweep(raw, check_paths=False)) if j.kind == "probe"]
    assert "--fresh" in job.argv(str(tmp_path), str(tmp_path / "out"))
    assert job_spec(job, tmp_path, tmp_path / "out").fresh is True
    plain = {**raw, "probe": {**raw["probe"], "fresh": False}}
    (other,) = [j for j in expand(parse_sweep(plain, check_paths=False)) if j.kind == "probe"]
    assert other.job_id != job.job_id and "--fresh" not in other.argv(str(tmp_path), str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="fresh needs ranks > 0"):
        parse_sweep({**raw, "probe": {**raw["probe"], "ranks": [0, 8]}}, check_paths=False)


def test_depth_analysis_takes_fresh_data_too(tmp_path, tok, gpt2):
    from probekit.configs import SettingError
    from probekit.probe.depth import depth_data
    from probekit.probe.experiment import DepthSpec, run_depth
    from probekit.sweep.config import parse_sweep
    from probekit.sweep.jobs import expand
    from probekit.sweep.runners import job_spec

    train, _ = depth_data("med", "pq", 2, 1, seed=1, op=2, tokenizer=tok, fresh=True)
    assert isinstance(train, FreshData) and set(train.epoch(1).meta["task"]) == {"nece"}
    with pytest.raises(SettingError, match="rank > 0"):
        DepthSpec(str(tmp_path), rank=0, fresh=True).check()
    ckpt = save_checkpoint(gpt2, tok, tmp_path / "ckpt", {"data": {"preset": "med"}})
    spec = DepthSpec(
        str(ckpt),
        models=("pretrained",),
        rank=2,
        steps=12,
        batch_size=4,
        n_train=2,
        n_test=2,
        op=2,
        layers="0",
        fresh=True,
        bootstrap=0,
        progress=False,
    )
    assert len(run_depth(spec).table)
    raw = {"name": "f", "results": str(tmp_path / "r"), "checkpoints": {"m": str(ckpt)}, "depth": {"fresh": True}}
    (job,) = [j for j in expand(parse_sweep(raw, check_paths=False)) if j.kind == "depth"]
    assert "--fresh" in job.argv(str(ckpt), str(tmp_path / "out"))
    assert job_spec(job, ckpt, tmp_path / "out").fresh is True
