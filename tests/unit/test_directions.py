"""Probe directions and the ablate / steer edits (:mod:`probekit.causal.directions`), the summary of an
intervention run and its figure: fast, on synthetic features (no language model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from probekit.causal.directions import (  # noqa: E402
    ablate,
    ablation,
    interventions,
    probe_direction,
    projection_stats,
    random_directions,
    steering,
)
from probekit.causal.interventions import METRICS, summarize_interventions  # noqa: E402
from probekit.probe.vprobe import VProbe  # noqa: E402

D = 16


def _features(n=400, seed=0):
    """States whose label is carried by a planted direction, with a large mean and unequal feature scales (so
    the standardisation matters)."""
    gen = torch.Generator().manual_seed(seed)
    scales = torch.linspace(0.2, 5.0, D)
    h = torch.randn(n, D, generator=gen) * scales + 3.0
    secret = torch.randn(D, generator=gen)
    labels = ((h - 3.0) @ secret > 0).long().numpy()
    return h, labels


@pytest.fixture(scope="module")
def fitted():
    h, labels = _features()
    probe = VProbe("nece", rank=0, steps=200, batch_size=64, device="cpu").fit_features(h, labels)
    return probe, h, labels


def _logit_difference(probe, states):
    with torch.no_grad():
        logits = probe.params_.logits(states).double()
    return logits[:, 1] - logits[:, 0]


def test_direction_reproduces_the_probes_logits(fitted):
    probe, h, labels = fitted
    direction = probe_direction(probe)
    assert torch.allclose(direction.logit_difference(h), _logit_difference(probe, h), atol=1e-4)
    assert float(direction.unit.norm()) == pytest.approx(1.0, abs=1e-6)
    assert (probe.predict_features(h) == labels).mean() > 0.8  # the probe reads the planted direction


@pytest.mark.parametrize("value", ["mean", "zero"])
def test_ablation_makes_the_probe_logit_constant(fitted, value):
    probe, h, _ = fitted
    direction = probe_direction(probe)
    (iv, *_random) = interventions(direction, h, mode="ablate", ablate_value=value, n_random=10)
    assert iv.direction == "probe" and len(_random) == 10
    m = float((h.double() @ direction.unit.double()).mean()) if value == "mean" else 0.0
    assert iv.value == pytest.approx(m, rel=1e-6, abs=1e-9)
    before = _logit_difference(probe, h)
    after = _logit_difference(probe, iv.apply(h))
    assert float(before.std()) > 0.3  # the probe did tell the states apart
    assert float(after.std()) < 1e-4 * float(before.std())  # ... and no longer can
    assert torch.allclose(after, torch.full_like(after, direction.norm * m + direction.offset), atol=1e-3)
    # only the component along the direction changed
    u = direction.unit
    rest = lambda x: x - (x @ u)[:, None] * u  # noqa: E731
    assert torch.allclose(rest(iv.apply(h)), rest(h), atol=1e-4)


def test_the_ablation_edit_equals_ablate_and_is_idempotent(fitted):
    probe, h, _ = fitted
    u = probe_direction(probe).unit
    edit = ablation(u, 1.5)
    states = h[None]  # (batch, seq, d)
    once = edit(states)
    assert torch.allclose(once, ablate(states, u, 1.5)) and torch.allclose(edit(once), once, atol=1e-5)
    assert torch.allclose(once @ u, torch.full(once.shape[:-1], 1.5), atol=1e-4)
    half = edit(states.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16  # keeps the activation's dtype


@pytest.mark.parametrize("alpha", [2.0, -0.5])
def test_steering_moves_the_logit_by_alpha_norm_std(fitted, alpha):
    probe, h, _ = fitted
    direction = probe_direction(probe)
    plan = interventions(direction, h, mode="steer", strength=alpha, n_random=10, seed=3)
    s = float((h.double() @ direction.unit.double()).std(unbiased=False))
    assert plan[0].projection_std == pytest.approx(s, rel=1e-6)
    shift = _logit_difference(probe, plan[0].apply(h)) - _logit_difference(probe, h)
    assert torch.allclose(shift, torch.full_like(shift, alpha * s * direction.norm), rtol=1e-3, atol=1e-3)
    assert all(iv.value == pytest.approx(alpha * s) for iv in plan)  # random directions: the same displacement
    moved = plan[1].apply(h) - h
    assert torch.allclose(moved.norm(dim=1), torch.full((len(h),), abs(alpha) * s), rtol=1e-4)


def test_random_directions_are_unit_seeded_and_reproducible():
    a = random_directions(10, D, seed=7)
    assert a.shape == (10, D) and a.dtype == torch.float32
    assert torch.allclose(a.norm(dim=1), torch.ones(10), atol=1e-6)
    assert torch.equal(a, random_directions(10, D, seed=7))
    assert torch.equal(random_directions(12, D, seed=7)[:10], a)  # row i does not depend on n
    assert not torch.allclose(random_directions(10, D, seed=8), a)
    assert float((a @ a.T - torch.eye(10)).abs().max()) < 0.95  # distinct directions
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="random directions"):
            random_directions(bad, D)


def test_bad_intervention_settings_fail_clearly(fitted):
    probe, h, _ = fitted
    direction = probe_direction(probe)
    with pytest.raises(ValueError, match="random directions"):
        interventions(direction, h, n_random=0)
    with pytest.raises(ValueError, match="mode"):
        interventions(direction, h, mode="erase")
    with pytest.raises(ValueError, match="ablate_value"):
        interventions(direction, h, ablate_value="median")
    with pytest.raises(ValueError, match="width"):
        interventions(direction, h[:, :4])
    with pytest.raises(ValueError, match="positions"):
        ablation(direction.unit, 0.0, positions="solution")
    values = np.arange(len(h)) % 24
    value_probe = VProbe("value", rank=0, steps=2, batch_size=32).fit_features(h, values)
    with pytest.raises(ValueError, match="binary"):
        probe_direction(value_probe)


def test_prompt_positions_leave_decoding_steps_alone():
    u = random_directions(1, D)[0]
    prefill, step = torch.randn(2, 5, D), torch.randn(2, 1, D)
    for edit in (ablation(u, 0.0, "prompt"), steering(u, 3.0, "prompt")):
        assert torch.equal(edit(step), step) and not torch.allclose(edit(prefill), prefill)
    assert not torch.allclose(steering(u, 3.0, "all")(step), step)


def test_projection_stats():
    h = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    mean, std = projection_stats(h, torch.eye(2))
    assert mean.tolist() == [2.0, 1.0] and std.tolist() == [1.0, 1.0]


def _rows(probe_values, random_values, none_values):
    rows = [{"direction": "none", **none_values}, {"direction": "probe", **probe_values}]
    rows += [{"direction": "random", "direction_index": i, **v} for i, v in enumerate(random_values)]
    return rows


def test_summary_ranks_the_probe_among_random_directions():
    randoms = [{"accuracy": 0.30 + 0.01 * i, "probe_accuracy": 0.8} for i in range(10)]
    rows = _rows({"accuracy": 0.05, "probe_accuracy": 0.6}, randoms, {"accuracy": 0.3, "probe_accuracy": 0.8})
    summary = {s["metric"]: s for s in summarize_interventions(rows, metrics=("accuracy", "probe_accuracy"))}
    acc = summary["accuracy"]
    assert acc["probe_rank"] == 1 and acc["p_value"] == pytest.approx(1 / 11) and acc["n_random"] == 10
    assert acc["random_min"] == pytest.approx(0.30) and acc["random_max"] == pytest.approx(0.39)
    assert acc["probe_change"] == pytest.approx(-0.25) and acc["random_mean"] == pytest.approx(0.345)
    # a probe change no larger than the random ones: rank last, p-value 1
    rows = _rows({"accuracy": 0.3}, [{"accuracy": 0.2}] * 10, {"accuracy": 0.3})
    (s,) = summarize_interventions(rows, metrics=("accuracy",))
    assert s["probe_rank"] == 11 and s["p_value"] == 1.0
    (s,) = summarize_interventions(_rows({}, [{}] * 3, {}), metrics=("accuracy",))
    assert s["probe_rank"] is None and math.isnan(s["p_value"])
    assert set(METRICS) >= {"probe_accuracy", "accuracy", "unnecessary_per_solution", "first_error_position"}
    with pytest.raises(ValueError, match="random rows"):
        summarize_interventions(rows[:2])


def test_figure_draws_probe_random_and_baseline(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    from probekit.figures.interventions import intervention_effects
    from probekit.figures.registry import NoData

    base = {
        "kind": "intervene",
        "checkpoint": "ckpt",
        "task": "nece",
        "hook": "blocks.6.hook_resid_post",
        "mode": "ablate",
        "ablate_value": "mean",
        "positions": "all",
        "n": 150,
    }
    metrics = {
        "probe_accuracy": 0.8,
        "probe_ci_low": 0.75,
        "probe_ci_high": 0.85,
        "accuracy": 0.25,
        "ci_low": 0.2,
        "ci_high": 0.3,
        "unnecessary_per_solution": 0.1,
        "first_error_position": 0.5,
    }
    rows = [{**base, **metrics, "direction": "none"}, {**base, **metrics, "direction": "probe", "accuracy": 0.1}]
    rows += [
        {**base, **metrics, "direction": "random", "direction_index": i, "accuracy": 0.24 + 0.01 * i} for i in range(10)
    ]
    rows.append({"kind": "accuracy", "checkpoint": "other", "accuracy": 0.5})  # another kind is ignored
    paths = intervention_effects(pd.DataFrame(rows), tmp_path)
    assert sorted(p.suffix for p in paths) == [".pdf", ".png", ".txt"] and all(p.stat().st_size for p in paths)
    assert "random" in paths[-1].read_text()
    with pytest.raises(NoData):
        intervention_effects(pd.DataFrame(rows[-1:]), tmp_path)
    with pytest.raises(NoData):
        intervention_effects(pd.DataFrame(rows), tmp_path, task="dep")


def test_figure_settings_keep_concatenated_runs_apart():
    pd = pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    from probekit.figures.interventions import _settings

    def run(mode, n_random):
        rows = [{"direction": "none"}, {"direction": "probe"}] + [{"direction": "random"}] * n_random
        return pd.DataFrame([{**r, "kind": "intervene", "checkpoint": "c", "task": "nece", "mode": mode} for r in rows])

    table = pd.concat([run("ablate", 10), run("steer", 3)])  # overlapping indices, as concat leaves them
    settings = _settings(table)
    assert [len(rows) for _, rows in settings] == [12, 5]
    assert [set(rows["mode"]) for _, rows in settings] == [{"ablate"}, {"steer"}]
