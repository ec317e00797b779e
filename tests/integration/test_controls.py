"""Controls and statistics of probe results: the control task (Hewitt and Liang 2019), selectivity, bootstrap
intervals over problems, the online code length (Voita and Titov 2020), ``--seeds`` and the CLI columns."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("pandas")

from test_probe import SMALL_RUN, _planted_task, planted_model  # noqa: E402  (tests/ is on sys.path under pytest)

from probekit.checkpoint import save_checkpoint  # noqa: E402
from probekit.igsm.generate import GenerationConfig  # noqa: E402
from probekit.probe import stats  # noqa: E402
from probekit.probe.data import examples_from_config, n_classes  # noqa: E402
from probekit.probe.layers import MDL_COLUMNS, control_seen, control_task, probe_layers  # noqa: E402
from probekit.probe.vprobe import score_row  # noqa: E402

CI_COLUMNS = (
    "ci_low",
    "ci_high",
    "ci_low_pos",
    "ci_high_pos",
    "ci_low_neg",
    "ci_high_neg",
    "ci_low_control",
    "ci_high_control",
    "ci_low_selectivity",
    "ci_high_selectivity",
)


@pytest.fixture(scope="module")
def planted(tok, gpt2):
    train, test, secret = _planted_task(tok)
    return train, test, planted_model(gpt2, secret)


# ---------------------------------------------------------------------------- control task
def _keys(data, task):
    return stats.control_keys(data.meta, task)


def test_control_labels_are_one_label_per_name_across_train_and_test():
    config = GenerationConfig("med", op=3, seed=0, split="train")
    tasks = "nece,dep,value"
    train = examples_from_config(config, 30, tasks=tasks, seed=0)
    # the same problems drawn again with another sampling seed: many names recur, in other examples
    other = examples_from_config(config, 30, tasks=tasks, seed=9)
    for task in ("nece", "dep", "value"):
        c_train, c_other = control_task(train, other, task, seed=3)
        assert np.array_equal(control_task(train, other, task, seed=3)[0], c_train)  # deterministic
        label_of = {}
        for key, y in [*zip(_keys(train.task(task), task), c_train), *zip(_keys(other.task(task), task), c_other)]:
            assert label_of.setdefault(key, y) == y, (task, key)  # one label per name (dep: per pair)
        shared = set(_keys(train.task(task), task)) & set(_keys(other.task(task), task))
        assert len(shared) > 30
        # the real task's label distribution (drawn per name, so up to sampling noise over ~100s of names)
        real = train.task(task).labels
        if task == "value":
            assert abs((c_train == 23).mean() - (real == 23).mean()) < 0.1
            assert set(np.unique(c_train)) <= set(np.unique(real))  # classes with train frequency 0 never drawn
        else:
            assert abs(c_train.mean() - real.mean()) < 0.1
        # not the real labels in disguise, and a new seed is a new map
        assert (c_train != real).any() and (control_task(train, other, task, seed=4)[0] != c_train).any()
    # dep keys are ordered pairs: (A, B) and (B, A) are different keys
    assert (
        stats.control_keys({"a": ["x", "y"], "b": ["y", "x"]}, "dep")[0]
        != stats.control_keys({"a": ["x", "y"], "b": ["y", "x"]}, "dep")[1]
    )


def test_control_keys_recur_between_train_and_test_and_only_seen_keys_are_scored():
    """Hewitt-Liang controls need keys that recur (word types): a full parameter name almost never recurs between
    train and test problems (dep pairs never), the counted item / category word does."""
    train = examples_from_config(GenerationConfig("med", seed=0), 150, tasks="nece,dep", seed=0)
    test = examples_from_config(GenerationConfig("med", seed=1, split="test"), 40, tasks="nece,dep", seed=1)
    for task, least in (("nece", 0.5), ("dep", 0.3)):
        seen = control_seen(train, test, task)
        assert seen.mean() > least, (task, seen.mean())
        names = set(train.task(task).meta["a"])
        assert np.mean([a in names for a in test.task(task).meta["a"]]) < 0.3  # full names: mostly unseen
    assert stats.control_keys({"a": ["Riverview High's Backpack"]}, "nece") == ["Backpack"]
    # scored only where the key was seen: the unseen examples do not count
    labels = np.array([1, 0, 1, 0])
    row = score_row(
        "nece",
        labels,
        labels,
        0,
        control_pred=[1, 1, 0, 0],
        control_labels=[1, 0, 1, 0],
        control_majority_class=0,
        control_mask=[True, True, False, False],
    )
    assert row["control_accuracy"] == 0.5 and row["control_seen"] == 0.5 and row["n_control"] == 2
    assert row["selectivity"] == 0.5 and row["accuracy_seen"] == 1.0


def test_control_label_map_has_the_prior_as_its_distribution():
    prior = np.r_[np.full(23, 0.3 / 23), 0.7]  # value-like: 24 classes, 70% unknown
    keys = [f"name {i}" for i in range(20000)]
    labels = stats.control_labels(keys, prior, seed=0, task="value")
    freq = np.bincount(labels, minlength=24) / len(labels)
    assert np.abs(freq - prior).max() < 0.01
    # consistent: a key repeated anywhere (any order, any data set) keeps its label
    again = stats.control_labels(keys[::-1][:500] + keys[:10], prior, seed=0, task="value")
    assert np.array_equal(again[:500], labels[::-1][:500]) and np.array_equal(again[500:], labels[:10])
    assert stats.label_prior(labels, 24).shape == (24,)


@pytest.mark.slow
def test_selectivity_and_mdl_separate_a_planted_signal_from_its_control(planted, gpt2):
    train, test, model = planted
    kwargs = {"layers": "-1", "rank": 0, "steps": 300, "batch_size": 64, "seed": 0}
    real = probe_layers(model, train, test, "nece", mdl=True, **kwargs).iloc[0]
    unplanted = probe_layers(gpt2, train, test, "nece", **kwargs).iloc[0]

    assert real.accuracy > 0.88 and real.selectivity > 0.3
    # selectivity compares both probes on the examples whose control key was seen in training
    assert real.selectivity == pytest.approx(real.accuracy_seen - real.control_accuracy)
    assert 0 < real.control_seen <= 1 and real.n_control == round(real.control_seen * real.n)
    assert real.ci_low_selectivity > 0.2  # paired interval over problems, clear of 0
    # the unplanted random model: no selectivity
    assert abs(unplanted.selectivity) < 0.1 and unplanted.ci_low_selectivity < 0 < unplanted.ci_high_selectivity
    # online code: the planted labels compress well, the control labels do not
    assert real.uniform_bits == pytest.approx(len(train) * math.log2(n_classes("nece")))
    assert real.compression > 2 and real.mdl_bits < real.uniform_bits
    assert real.control_compression < 1.05 and math.isnan(unplanted.compression)  # (mdl off)
    assert real.compression == pytest.approx(real.uniform_bits / real.mdl_bits)
    for row in (real, unplanted):
        assert row.ci_low <= row.accuracy <= row.ci_high and row.ci_low_control <= row.control_accuracy
        assert row.n_problems == 40 and row.bootstrap == stats.N_BOOT


def test_controls_off_and_rank_update_path(gpt2):
    train = examples_from_config(GenerationConfig("med", op=3, seed=0), 6, tasks="dep", seed=0)
    test = examples_from_config(GenerationConfig("med", op=3, seed=1, split="test"), 4, tasks="dep", seed=1)
    on = probe_layers(gpt2, train, test, "dep", layers="-1", rank=2, steps=2, batch_size=16, seed=1)
    off = probe_layers(
        gpt2, train, test, "dep", layers="-1", rank=2, steps=2, batch_size=16, seed=1, controls=False, bootstrap=0
    )
    assert on.accuracy[0] == off.accuracy[0]  # the control probe does not disturb the real one
    assert 0 <= on.control_accuracy[0] <= 1 and not math.isnan(on.ci_low[0]) and on.n_problems[0] == 4
    assert off[["control_accuracy", "selectivity", "ci_low", "ci_high", *MDL_COLUMNS]].isna().all(axis=None)


# ---------------------------------------------------------------------------- bootstrap over problems
def test_bootstrap_interval_of_a_constant_predictor_is_a_point():
    groups = np.repeat(np.arange(30), 7)
    for label in (0, 1):
        labels = np.full(len(groups), label)
        for pred in (labels, 1 - labels):  # always right, always wrong
            row = score_row(
                "nece",
                pred,
                labels,
                majority_class=1,
                groups=groups,
                bootstrap=1000,
                control_pred=pred,
                control_labels=labels,
                control_majority_class=1,
            )
            assert row["ci_low"] == row["ci_high"] == row["accuracy"] in (0.0, 1.0)
            assert row["ci_low_control"] == row["ci_high_control"] == row["control_accuracy"]
            assert row["ci_low_selectivity"] == row["ci_high_selectivity"] == 0.0
            side = "pos" if label == 1 else "neg"
            assert row[f"ci_low_{side}"] == row[f"ci_high_{side}"] == row[f"accuracy_{side}"]
            other = "neg" if label == 1 else "pos"
            assert math.isnan(row[f"ci_low_{other}"])  # no such example: undefined on every resample
    assert stats.bootstrap_ci(np.ones(50), np.arange(50) // 5) == (1.0, 1.0)


def _clustered(n_problems, per_problem=10, seed=0):
    """Correctness with a strong per-problem effect (examples of one problem are correlated)."""
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 1, size=n_problems)  # per-problem accuracy
    groups = np.repeat(np.arange(n_problems), per_problem)
    return (rng.random(len(groups)) < p[groups]).astype(float), groups


def test_intervals_contain_the_accuracy_and_shrink_with_more_problems():
    widths = []
    for n_problems in (20, 80, 320):
        correct, groups = _clustered(n_problems)
        low, high = stats.bootstrap_ci(correct, groups, seed=1)
        assert low < correct.mean() < high
        assert (low, high) == stats.bootstrap_ci(correct, groups, seed=1)  # seeded
        widths.append(high - low)
        # resampling examples ignores the correlation: narrower than resampling problems
        iid_low, iid_high = stats.bootstrap_ci(correct, None, seed=1)
        assert iid_high - iid_low < 0.8 * (high - low)
    assert widths[0] > 1.5 * widths[1] > 2.25 * widths[2]  # ~ 1 / sqrt(problems): halves per 4x
    # the meta of ProbeData gives the problems; all columns of one row share the resamples
    meta = {"problem": [0, 0, 1, 1, 2], "seed": [1] * 5, "split": ["test"] * 5}
    assert stats.problem_groups(meta).tolist() == [0, 0, 1, 1, 2]
    assert stats.problem_groups({"task": ["nece"] * 3}, 3).tolist() == [0, 1, 2]
    samples = stats.bootstrap_means({"a": (correct, None), "b": (correct, None)}, groups, 200, seed=2)
    assert np.array_equal(samples["a"], samples["b"])


# ---------------------------------------------------------------------------- online code bookkeeping
def test_mdl_blocks_and_problem_order():
    assert stats.mdl_blocks(10000) == [10, 20, 40, 80, 160, 320, 625, 1250, 2500, 5000, 10000]
    assert stats.mdl_blocks(800)[:3] == [1, 2, 3] and stats.mdl_blocks(800)[-1] == 800
    assert stats.mdl_blocks(2) == [1, 2]
    groups = np.array([3, 0, 3, 1, 1, 2, 0, 3])
    order = stats.group_order(groups, seed=0)
    assert sorted(order.tolist()) == list(range(8))
    runs = [g for i, g in enumerate(groups[order]) if i == 0 or g != groups[order][i - 1]]
    assert sorted(runs) == [0, 1, 2, 3]  # each problem's examples are contiguous
    assert stats.uniform_bits(8, 24) == pytest.approx(8 * math.log2(24))
    assert stats.code_length_bits(np.log(np.full((4, 2), 0.5)), [0, 1, 1, 0]) == pytest.approx(4.0)


# ---------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_cli_json_carries_controls_intervals_mdl_and_seeds(tmp_path, tok, gpt2, probe_cli):
    ckpt = save_checkpoint(gpt2, tok, tmp_path / "ckpt", {"data": {"preset": "med"}})
    common = [
        "probe",
        str(ckpt),
        "--task",
        "nece",
        "--rank",
        "0",
        "--baseline",
        "none",
        *SMALL_RUN,
        "--json",
        "--quiet",
    ]
    records, err = probe_cli([*common, "--mdl", "--seeds", "2", "--bootstrap", "200", "--out", str(tmp_path / "o")])
    assert [r["seed"] for r in records] == [0, 1]
    for r in records:
        assert {
            "control_accuracy",
            "selectivity",
            "control_majority",
            "n_problems",
            *CI_COLUMNS,
            *MDL_COLUMNS,
        } <= r.keys()
        assert r["ci_low"] <= r["accuracy"] <= r["ci_high"] and r["bootstrap"] == 200 and r["n_problems"] == 6
        assert r["selectivity"] == pytest.approx(r["accuracy_seen"] - r["control_accuracy"])
        assert r["compression"] == pytest.approx(r["uniform_bits"] / r["mdl_bits"])
    assert "±" in err and "selectivity" in err  # mean ± std over the seeds
    lines = (tmp_path / "o" / "results.jsonl").read_text().splitlines()
    assert [json.loads(x)["control_accuracy"] for x in lines] == [r["control_accuracy"] for r in records]
    assert (tmp_path / "o" / "probes" / "pretrained-nece-ln_final" / "probe.json").exists()  # the default read-out
    assert (tmp_path / "o" / "probes" / "seed1" / "pretrained-nece-ln_final" / "probe.json").exists()

    (plain,), _ = probe_cli([*common, "--no-controls", "--bootstrap", "0"])
    assert plain["accuracy"] == records[0]["accuracy"]  # same probe (seed 0), with or without the controls
    assert all(plain[k] is None for k in ("control_accuracy", "selectivity", "ci_low", "ci_high", "mdl_bits"))
