"""Tests for probekit.figures: every figure from a fabricated results store, the report and ``probekit figures``.

The store holds two checkpoints (4-layer and 8-layer GPT2) with rows of every kind; probe and depth rows come
for the pretrained model and a random-init model of the same shape. Figures are rendered once per module.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from probekit.evaluate.metrics import FIRST_BINS, fit_step_accuracy, wilson_interval
from probekit.figures.registry import FIGURE_NAMES, NoData, render

CHECKPOINTS = {"gpt2-4-2-cpu": (4, 128, "a1b2c3d4e5f6a7b8"), "gpt2-8-2-cpu": (8, 128, "0f1e2d3c4b5a6978")}
SETS = {"op<=15": (None, False), "op=15": (15, False), "op=20": (20, False), "reask op=20": (20, True)}
TASKS = ("nece", "dep", "known", "value", "can_next", "nece_next")


def _common(ckpt: str, kind: str, job: str, model: str = "pretrained") -> dict:
    n_layer, d_model, sha = CHECKPOINTS[ckpt]
    return {
        "job_id": job,
        "kind": kind,
        "sweep": "cpu-small",
        "checkpoint": ckpt,
        "checkpoint_path": f"models/{ckpt}",
        "checkpoint_sha256": sha * 4,
        "revision": "0.1.0+abc1234",
        "job_config": json.dumps({"kind": kind}),
        "model": model,
        "arch": "gpt2",
        "n_layer": n_layer,
        "d_model": d_model,
        "n_params": n_layer * 12 * d_model**2,
        "train_preset": "med",
    }


def _accuracy_rows(rng) -> list[dict]:
    rows = []
    for ckpt in CHECKPOINTS:
        for name, (op, reask) in SETS.items():
            for seed in (0, 1):
                ops = range(1, 16) if op is None else [op]
                by_op = {str(o): [int(n), int(rng.binomial(n, 0.97**o))] for o in ops for n in [rng.integers(20, 60)]}
                n = sum(v[0] for v in by_op.values())
                k = sum(v[1] for v in by_op.values())
                by_ip = {"3": [n // 2, k // 2], "7": [n - n // 2, k - k // 2]}
                low, high = wilson_interval(k, n)
                samples = 8 if seed == 0 else math.nan
                rows.append(
                    {
                        **_common(ckpt, "accuracy", f"eval-{ckpt}-{seed}"),
                        "set": name,
                        "preset": "med",
                        "format": "pq",
                        "op": op,
                        "reask": reask,
                        "seed": seed,
                        "n": n,
                        "correct": k,
                        "accuracy": k / n,
                        "ci_low": low,
                        "ci_high": high,
                        "unnecessary_per_correct": 0.5 if reask else 0.02,
                        "first_error_position": 0.6,
                        "accuracy_by_op": json.dumps(by_op),
                        "accuracy_by_ip": json.dumps(by_ip),
                        "always_zero_accuracy": 0.05,
                        "kind_wrong_value": n - k,
                        "samples": samples,
                        "temperature": 0.7 if seed == 0 else math.nan,
                        "pass_at_1": k / n if seed == 0 else math.nan,
                        "pass_at_n": min(1.0, k / n + 0.1) if seed == 0 else math.nan,
                        "pass_ratio_at_n": k / n - 0.05 if seed == 0 else math.nan,
                        "pass_ratio_ci_low": k / n - 0.1 if seed == 0 else math.nan,
                        "pass_ratio_ci_high": k / n if seed == 0 else math.nan,
                        # training metadata and error types (the scaling figures): 4-layer on 4096 problems, 8-layer unlimited
                        "train_n_problems": 4096 if ckpt == "gpt2-4-2-cpu" else None,
                        "train_init_from": None,
                        "train_resample": "none",
                        "errors_calculation": (n - k) // 3,
                        "errors_reasoning": (n - k) - (n - k) // 3,
                        "errors_format": 0,
                    }
                )
    return rows


def _probe_rows(rng) -> list[dict]:
    rows = []
    for ckpt, (n_layer, _, _) in CHECKPOINTS.items():
        for model, level in (("pretrained", 0.95), ("random-init", 0.7)):
            for layer in (n_layer - 2, n_layer - 1):
                for task in TASKS:
                    for test_set in ("id", "r20"):  # the sweep's spelling of "reask op=20"
                        n, n_pos = 400, 60
                        value = task == "value"
                        rows.append(
                            {
                                **_common(ckpt, "probe", f"probe-{ckpt}-{model}", model),
                                "task": task,
                                "layer": layer,
                                "hook": f"blocks.{layer}.hook_resid_post",
                                "rank": 8,
                                "test_set": test_set,
                                "accuracy": level - 0.01 * layer,
                                "accuracy_pos": math.nan if value else level - 0.1,
                                "accuracy_neg": math.nan if value else level,
                                "majority": 0.85,
                                "n": n,
                                "n_pos": math.nan if value else n_pos,
                                "accuracy_unnecessary": level - 0.05,
                                "n_unnecessary": 150,
                                "seed": 0,
                                "steps": 1000,
                                "n_train": 8192,
                                "control_accuracy": 0.8,
                                "selectivity": level - 0.01 * layer - 0.8,
                            }
                        )
    return rows


def _mistake_rows() -> list[dict]:
    rows = []
    groups = {
        "unnecessary": [("necessary", 1, 0.97), ("written_unnecessary", 0, 0.6), ("unwritten_unnecessary", 0, 0.1)],
        "first_error": [("first_error", 0, 0.4), ("background", 0, 0.9), ("correct_step", 1, 0.95)],
    }
    for ckpt in CHECKPOINTS:
        for analysis, specs in groups.items():
            for task in ["nece"] if analysis == "unnecessary" else ["can_next", "nece_next"]:
                for name in ("reask op=20", "all"):
                    for group, label, p in specs:
                        n = 200
                        k = round(p * n)
                        correct = k if label == 1 else n - k
                        lo, hi = wilson_interval(k, n)
                        clo, chi = wilson_interval(correct, n)
                        rows.append(
                            {
                                **_common(ckpt, "mistakes", f"mistakes-{ckpt}"),
                                "analysis": analysis,
                                "task": task,
                                "set": name,
                                "group": group,
                                "true_label": label,
                                "n": n,
                                "n_pred_true": k,
                                "p_pred_true": k / n,
                                "p_ci_low": lo,
                                "p_ci_high": hi,
                                "n_correct": correct,
                                "accuracy": correct / n,
                                "ci_low": clo,
                                "ci_high": chi,
                                "layer": CHECKPOINTS[ckpt][0] - 1,
                            }
                        )
    return rows


def _depth_rows() -> list[dict]:
    rows = []
    for ckpt, (n_layer, _, _) in CHECKPOINTS.items():
        for model in ("pretrained", "random-init"):
            for layer in range(n_layer):
                for distance in range(1, 5):
                    n = 100
                    k = int(n * min(1.0, 0.5 + 0.1 * layer - 0.05 * distance)) if model == "pretrained" else 50
                    lo, hi = wilson_interval(k, n)
                    rows.append(
                        {
                            **_common(ckpt, "depth", f"depth-{ckpt}-{model}", model),
                            "layer": layer,
                            "hook": f"blocks.{layer}.hook_resid_post",
                            "distance": distance,
                            "n": n,
                            "n_correct": k,
                            "accuracy": k / n,
                            "ci_low": lo,
                            "ci_high": hi,
                            "rank": 8,
                            "n_train": 4096,
                            "test_set": "id",
                        }
                    )
    return rows


def _curve(ckpt: str) -> str:
    """A learning curve: loss every 50 steps, an evaluation every 100 (accuracy rising to 0.6 / 0.9)."""
    top = 0.6 if ckpt == "gpt2-4-2-cpu" else 0.9
    points = []
    for step in range(50, 201, 50):
        common = {"step": step, "tokens": step * 1024, "problems": step * 5, "train_seconds": step * 0.5}
        points.append({**common, "loss": 3.0 / step, "solution_loss": 2.0 / step})
        if step % 100 == 0:
            acc = top * step / 200
            points.append(
                {
                    "event": "eval",
                    **common,
                    "accuracy": acc,
                    "ci_low": acc - 0.05,
                    "ci_high": acc + 0.05,
                    "n": 96,
                    "accuracy_by_op": {"2": acc + 0.05, "3": acc, "4": acc - 0.05},
                }
            )
    return json.dumps(points)


def _train_rows() -> list[dict]:
    return [
        {
            **_common(ckpt, "train", f"train-{ckpt}"),
            "step": 200,
            "tokens": 200 * 1024,
            "loss": 3.0 / 200,
            "seconds": 100.0,
            "curve": _curve(ckpt),
        }
        for ckpt in CHECKPOINTS
    ]


def _patch_rows(rng) -> list[dict]:
    rows = []
    for ckpt, (n_layer, _, _) in CHECKPOINTS.items():
        points = ["embed.hook_out", *(f"blocks.{i}.hook_resid_post" for i in range(n_layer)), "ln_final.hook_out"]
        for pair in range(3):
            for depth, point in enumerate(points, start=-1):
                for role in ("changed", "solution", "all"):
                    restored = 1.0 if role == "all" else float(np.clip(rng.normal(1 - depth / n_layer, 0.05), 0, 1))
                    restored = restored if role != "solution" else 1.0 - restored
                    rows.append(
                        {
                            **_common(ckpt, "patch", f"patch-{ckpt}"),
                            "pair": pair,
                            "pair_kind": "value",
                            "point": point,
                            "component": "resid_post",
                            "depth": depth,
                            "role": role,
                            "direction": "denoise",
                            "restored": restored,
                            "skipped": False,
                            "seed": 0,
                        }
                    )
    return rows


def _intervene_rows(rng) -> list[dict]:
    rows = []
    for ckpt in CHECKPOINTS:
        for direction, index in [("none", None), ("probe", 0), *(("random", i) for i in range(4))]:
            acc, unnecessary = float(rng.uniform(0.2, 0.4)), float(rng.uniform(0.05, 0.15))
            rows.append(
                {
                    **_common(ckpt, "intervene", f"intervene-{ckpt}"),
                    "task": "nece",
                    "hook": "blocks.3.hook_resid_post",
                    "rank": 0,
                    "mode": "ablate",
                    "ablate_value": "mean",
                    "positions": "all",
                    "direction": direction,
                    "direction_index": index,
                    "probe_accuracy": 0.75 if direction == "probe" else 0.82,
                    "probe_ci_low": 0.7,
                    "probe_ci_high": 0.85,
                    "accuracy": acc,
                    "ci_low": acc - 0.05,
                    "ci_high": acc + 0.05,
                    "n": 100,
                    "unnecessary_per_solution": unnecessary,
                    "unnecessary_ci_low": unnecessary - 0.02,
                    "unnecessary_ci_high": unnecessary + 0.02,
                    "first_error_position": 0.7,
                    "delta_accuracy": None if direction == "none" else acc - 0.3,
                    "delta_unnecessary": None if direction == "none" else unnecessary - 0.1,
                    "seed": 0,
                }
            )
    return rows


def make_store() -> pd.DataFrame:
    """A small results store with rows of every kind."""
    rng = np.random.default_rng(0)
    rows = _accuracy_rows(rng) + _probe_rows(rng) + _mistake_rows() + _depth_rows() + _train_rows()
    rows += _patch_rows(rng) + _intervene_rows(rng)
    table = pd.DataFrame(rows)
    table["op"] = table["op"].astype("Int64")
    return table


@pytest.fixture(scope="module")
def store() -> pd.DataFrame:
    return make_store()


@pytest.fixture(scope="module")
def rendered(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    data_figures = [n for n in FIGURE_NAMES if n != "fig1"]
    return out, {fr.name: fr for fr in render(store, data_figures, out)}


# ============================================================================================== figures
@pytest.mark.slow
def test_every_data_figure_writes_png_pdf_and_caption(rendered, store):
    out, results = rendered
    assert set(results) == set(FIGURE_NAMES) - {"fig1"}
    for name, fr in results.items():
        assert fr.skipped is None, (name, fr.skipped)
        assert sorted(p.name for p in fr.paths) == [f"{name}.pdf", f"{name}.png", f"{name}.txt"]
        png, pdf, txt = (out / f"{name}.{ext}" for ext in ("png", "pdf", "txt"))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000
        text = txt.read_text()
        for ckpt, (_, _, sha) in CHECKPOINTS.items():
            assert f"{ckpt} (sha256 {(sha * 4)[:12]})" in text, (name, text)
        assert "revision(s): 0.1.0+abc1234" in text and "n per cell:" in text and "Units:" in text
        kind = {"fig3": "accuracy", "fig7a": "probe", "fig8a": "mistakes", "fig10": "depth"}.get(name)
        if kind:
            assert fr.n_rows == int((store["kind"] == kind).sum())


def test_captions_report_counts_and_job_numbers(rendered, store):
    out, _ = rendered
    fig3 = (out / "fig3.txt").read_text()
    accuracy = store[store["kind"] == "accuracy"]
    pooled_n = accuracy.groupby(["checkpoint", "set"])["n"].sum()
    assert f"n per cell: {int(pooled_n.min())}-{int(pooled_n.max())} problems" in fig3
    assert f"Runs: {accuracy['job_id'].nunique()} job(s) of sweep(s) cpu-small" in fig3
    assert "n per cell: 100 parameters" in (out / "fig10.txt").read_text()
    # fig7a shows the last layer per checkpoint at the largest rank
    assert (
        "gpt2-4-2-cpu pretrained: read-out blocks.3.hook_resid_post (block 3, before the final norm), rank 8"
        in (out / "fig7a.txt").read_text()
    )
    assert "gpt2-8-2-cpu random-init: read-out blocks.7.hook_resid_post" in (out / "fig7a.txt").read_text()
    assert "N = 8 samples at temperature 0.7" in (out / "stability.txt").read_text()


def test_step_fit_reports_the_refit_on_pooled_counts(rendered, store):
    from probekit.figures.accuracy import step_fits

    out, _ = rendered
    text = (out / "step_fit.txt").read_text()
    rows = store[(store["kind"] == "accuracy") & ~store["reask"].astype(bool)]
    for ckpt in CHECKPOINTS:
        bins: dict[int, list[int]] = {}
        for raw in rows.loc[rows["checkpoint"] == ckpt, "accuracy_by_op"]:
            for op, (n, k) in json.loads(raw).items():
                bins.setdefault(int(op), [0, 0])
                bins[int(op)][0] += n
                bins[int(op)][1] += k
        ops = sorted(bins)
        fit = fit_step_accuracy(ops, [bins[o][0] for o in ops], [bins[o][1] for o in ops])
        assert 0.9 < fit.step_accuracy < 1.0
        assert (
            f"{ckpt} (weighted by bin counts, all op bins): step accuracy {fit.step_accuracy:.4f} "
            f"(95% profile CI {fit.ci_low:.4f}-{fit.ci_high:.4f})" in text
        )
        assert f"{fit.n} problems in {len(ops)} op bins" in text
        assert step_fits(store)[ckpt][1].step_accuracy == fit.step_accuracy
        if len(ops) > FIRST_BINS:  # the dashed curve: the first four bins only
            part = fit_step_accuracy(ops, [bins[o][0] for o in ops], [bins[o][1] for o in ops], first_bins=FIRST_BINS)
            assert (
                f"{ckpt} (weighted by bin counts, the first 4 op bins): step accuracy {part.step_accuracy:.4f}" in text
            )


def test_by_size_pools_each_sets_counts_over_seeds(rendered, store, tmp_path):
    from probekit.figures.accuracy import by_size

    out, _ = rendered
    text = (out / "by_size.txt").read_text()
    rows = store[(store["kind"] == "accuracy") & ~store["reask"].astype(bool)]
    for ckpt in CHECKPOINTS:
        for name in ("op<=15", "op=15", "op=20"):
            cells = [
                json.loads(raw)
                for raw in rows.loc[(rows["checkpoint"] == ckpt) & (rows["set"] == name), "accuracy_by_ip"]
            ]
            assert len(cells) == 2  # two seeds, summed
            n3, k3 = (sum(c["3"][i] for c in cells) for i in (0, 1))
            n7, k7 = (sum(c["7"][i] for c in cells) for i in (0, 1))
            assert f"{ckpt}, {name}: correct/n by instance parameters 3: {k3}/{n3}, 7: {k7}/{n7}." in text
        assert f"{ckpt}, reask op=20:" not in text  # re-asked sets are left out, as in step_fit
    with pytest.raises(NoData, match="accuracy_by_ip"):  # rows from before eval counted by size
        by_size(store.drop(columns="accuracy_by_ip"), tmp_path)
    qp = store[store["kind"] == "accuracy"].assign(format="qp", accuracy_by_ip=json.dumps({"5": [10, 4]}))
    by_size(pd.concat([store, qp]), tmp_path)  # two formats: a line each, not one pooled line
    text = (tmp_path / "by_size.txt").read_text()
    assert "gpt2-4-2-cpu, op=15 (med qp): correct/n by instance parameters 5: 8/20." in text
    assert "gpt2-4-2-cpu, op=15 (med pq): correct/n by instance parameters 3: " in text


def test_step_fit_unweighted_over_bin_means(store, tmp_path):
    from probekit.figures.accuracy import step_fit, step_fits

    step_fit(store, tmp_path, weighting="bins", first_bins=2)
    text = (tmp_path / "step_fit.txt").read_text()
    assert "least squares over the per-bin accuracies" in text and "first 2 op bins" in text
    for ckpt, ((ops, n, k), fit) in step_fits(store, weighting="bins").items():
        assert fit.weighting == "bins"
        assert (
            f"{ckpt} (unweighted over bin means, all op bins): step accuracy {fit.step_accuracy:.4f} (no interval)"
            in text
        )
        assert fit.step_accuracy == fit_step_accuracy(ops, n, k, weighting="bins").step_accuracy


def test_fig9_takes_the_best_of_seeds_and_decodings(tmp_path):
    """Paper Fig. 9: each cell is the best over 2 training seeds x 2 decodings (greedy, beam 4 with sampling)."""
    from probekit.figures.accuracy import best_of_table, fig9

    rows = []
    correct = {("a", "greedy"): 50, ("a", "beam-sample"): 70, ("b", "greedy"): 60, ("b", "beam-sample"): 40}
    for (ckpt, decoding), k in correct.items():
        for seed in (0, 1):  # evaluation seeds are pooled, not maximised over
            rows.append(
                {
                    "kind": "accuracy",
                    "checkpoint": f"gpt2-4-2-{ckpt}",
                    "n_layer": 4,
                    "d_model": 128,
                    "preset": "med",
                    "format": "pq",
                    "set": "op=3",
                    "seed": seed,
                    "decoding": decoding,
                    "n": 100,
                    "correct": k + seed,
                }
            )
    rows.append({**rows[0], "checkpoint": "gpt2-8-2-a", "n_layer": 8, "correct": 30})  # a shape of its own
    del rows[-1]["decoding"]  # rows from before decodings existed are greedy
    table = best_of_table(pd.DataFrame(rows))
    cell = table[table["checkpoint"] == "4-layer 128-dim"].iloc[0]
    assert (cell["correct"], cell["n"], cell["candidates"]) == (141, 200, 4)
    assert cell["best"] == "gpt2-4-2-a / beam-sample"
    deep = table[table["checkpoint"] == "8-layer 128-dim"].iloc[0]
    assert (deep["correct"], deep["candidates"], deep["best"]) == (30, 1, "gpt2-8-2-a / greedy")
    fig9(pd.DataFrame(rows), tmp_path)
    text = (tmp_path / "fig9.txt").read_text()
    assert "best over the checkpoints of that shape" in text and "best of 4: gpt2-4-2-a / beam-sample" in text
    fig9(pd.DataFrame(rows), tmp_path, best_of=False)
    assert "one row per checkpoint" in (tmp_path / "fig9.txt").read_text()


def test_pooled_accuracy_sums_seeds_and_recomputes_wilson(store):
    from probekit.figures.accuracy import pooled_accuracy

    rows = store[store["kind"] == "accuracy"]
    table = pooled_accuracy(rows).set_index(["checkpoint", "set"])
    raw = rows[(rows["checkpoint"] == "gpt2-8-2-cpu") & (rows["set"] == "op=20")]
    cell = table.loc[("gpt2-8-2-cpu", "op=20")]
    n, k = raw["n"].sum(), raw["correct"].sum()
    assert (cell["n"], cell["correct"]) == (n, k)
    assert (cell["ci_low"], cell["ci_high"]) == pytest.approx(wilson_interval(k, n))
    assert len(table) == len(CHECKPOINTS) * len(SETS)


def test_probe_pooling_rebuilds_pos_neg_counts(store):
    from probekit.figures.probing import probe_table

    rows, table = probe_table(store, layer=2)
    assert set(rows["layer"]) == {2}
    cell = table[
        (table["checkpoint"] == "gpt2-4-2-cpu")
        & (table["model"] == "pretrained")
        & (table["task"] == "dep")
        & (table["test_set"] == "id")
    ].iloc[0]
    assert (cell["n_pos"], cell["n_neg"]) == (60, 340)
    assert cell["acc_neg"] == pytest.approx(round(0.95 * 340) / 340)
    value = table[table["task"] == "value"]
    assert value["acc_pos"].isna().all() and (value["n_pos"] == 0).all()
    with pytest.raises(NoData, match="layer = 99"):
        probe_table(store, layer=99)


def test_each_task_is_shown_at_its_largest_rank(store):
    """A sweep may run rank-8 V-probes for some tasks beside linear probes for all (``probe.by_rank``): each
    task is shown at its own largest rank, and the caption says which rank shows which tasks."""
    from probekit.figures.probing import _notes, probe_table

    probes = store[store["kind"] == "probe"]
    linear = probes.assign(rank=0, accuracy=probes["accuracy"] - 0.1)
    mixed = pd.concat([store[(store["kind"] != "probe") | (store["task"] == "nece")], linear])
    rows, table = probe_table(mixed)
    assert set(zip(rows["task"], rows["rank"])) == {("nece", 8), *((t, 0) for t in TASKS if t != "nece")}
    note = _notes(table)[0]
    assert "rank 8 for nece" in note and "rank 0 (linear probe, not the paper's V-probe) for dep, " in note
    assert "rank 8 (" not in _notes(probe_table(store)[1])[0] and " for nece" not in _notes(probe_table(store)[1])[0]


def test_missing_kinds_are_skipped_with_a_reason(tmp_path, store):
    only_accuracy = store[store["kind"] == "accuracy"].drop(columns=["pass_at_n", "pass_at_1"])
    names = ["fig3", "fig7a", "fig12", "fig8b", "fig10", "stability"]
    results = {fr.name: fr for fr in render(only_accuracy, names, tmp_path)}
    assert results["fig3"].skipped is None and results["fig3"].paths
    for name, kind in (("fig7a", "probe"), ("fig12", "probe"), ("fig8b", "mistakes"), ("fig10", "depth")):
        assert results[name].skipped == f"no {kind!r} rows in the results store"
        assert results[name].paths == [] and results[name].n_rows == 0
        assert not (tmp_path / f"{name}.png").exists()
    assert "sampled evaluations" in results["stability"].skipped
    assert results["stability"].n_rows == len(only_accuracy)


def test_figure_specific_rows_missing_are_skipped(tmp_path, store):
    no_first_error = store[~((store["kind"] == "mistakes") & (store["analysis"] == "first_error"))]
    no_unnecessary = no_first_error.assign(accuracy_unnecessary=math.nan)
    results = {fr.name: fr for fr in render(no_unnecessary, ["fig8b", "fig7b"], tmp_path)}
    assert results["fig8b"].skipped == "no mistakes rows with analysis = 'first_error'"
    assert results["fig7b"].skipped == "the 'probe' rows have no values in column(s) accuracy_unnecessary"


def test_checkpoints_are_ordered_by_depth_then_width():
    from probekit.figures.registry import checkpoint_order

    table = pd.DataFrame(
        {
            "checkpoint": ["a-wide", "b-deep", "c-shallow", "a-wide"],
            "n_layer": [4, 20, 4, 4],
            "d_model": [1920, 576, 768, 1920],
        }
    )
    assert checkpoint_order(table) == ["c-shallow", "a-wide", "b-deep"]


def test_sets_are_ordered_and_short_names_spelled_out():
    from probekit.figures.registry import set_label, sorted_sets

    names = ["all", "reask op=20", "r15", "op=20", "15", "op<=15", "id"]
    assert sorted_sets(names) == ["id", "op<=15", "15", "op=20", "r15", "reask op=20", "all"]
    assert [set_label(n) for n in ("15", "r15", "id", "op<=15")] == ["op=15", "reask op=15", "id", "op<=15"]


def test_unknown_names_and_options_are_rejected(tmp_path, store):
    with pytest.raises(ValueError, match="unknown figure.*'fig99'.*allowed: fig1, fig3"):
        render(store, ["fig3", "fig99"], tmp_path)
    with pytest.raises(ValueError, match="fig3 has no option.*colour; allowed: none"):
        render(store, ["fig3"], tmp_path, {"fig3": {"colour": "red"}})
    with pytest.raises(ValueError, match="fig7a has no option.*allowed: layer, rank"):
        render(store, ["fig7a"], tmp_path, {"fig7a": {"hook": "x"}})
    assert not list(tmp_path.iterdir())


def test_figure_text_is_sized_by_the_style():
    """Text is sized when it is created, so a figure function must draw under the style, not only make its axes
    and save under it: every figure function is wrapped by ``styled``, and a label drawn in one gets the style's
    size (outside it, matplotlib's default)."""
    from matplotlib.lines import Line2D

    from probekit.figures.registry import FIGURES
    from probekit.figures.style import RC, new_figure, styled

    def draw():
        fig, axes = new_figure()
        ax = axes[0, 0]
        ax.set_ylabel("accuracy")
        legend = ax.legend(handles=[Line2D([], [], label="a series")])
        return ax.yaxis.label.get_size(), legend.get_texts()[0].get_size()

    assert styled(draw)() == (RC["axes.labelsize"], RC["legend.fontsize"])
    assert draw() != styled(draw)()  # matplotlib's defaults (10 pt) without it
    unwrapped = [name for name, function in FIGURES.items() if name != "fig1" and not hasattr(function, "__wrapped__")]
    assert unwrapped == []


def test_fig1_draws_a_generated_problem(tmp_path):
    pytest.importorskip("probekit.figures.graphs")
    (fr,) = render(pd.DataFrame({"kind": []}), ["fig1"], tmp_path, {"fig1": {"op": 4}})
    assert fr.skipped is None
    assert (tmp_path / "fig1.png").read_bytes()[:4] == b"\x89PNG"
    assert "op=4" in (tmp_path / "fig1.txt").read_text()


def test_package_import_is_lazy(imported_modules):
    code = "import probekit.figures, probekit.figures.registry, probekit.figures.command"
    assert imported_modules(code, ["matplotlib", "pandas"]) == []


# ============================================================================================== report
def test_report_has_a_table_per_kind_and_the_figures(rendered, store, tmp_path):
    from probekit.figures.report import write_report

    out, results = rendered
    path = write_report(store, tmp_path, list(results.values()))
    text = path.read_text()
    assert path == tmp_path / "REPORT.md"
    for title in (
        "## Generation accuracy",
        "## Data scaling",
        "## V-probes",
        "## Layer-wise nece probing",
        "## Mistake analysis",
        "## Training",
        "## Figures",
    ):
        assert title in text
    rows = store[(store["kind"] == "accuracy") & (store["checkpoint"] == "gpt2-4-2-cpu") & (store["set"] == "op=15")]
    n, k = int(rows["n"].sum()), int(rows["correct"].sum())
    low, high = wilson_interval(k, n)
    assert f"| gpt2-4-2-cpu | med_pq | op=15 | {n} | {k / n:.3f} [{low:.3f}, {high:.3f}] | 0.050 | 0.02 |" in text
    last = "blocks.7.hook_resid_post"  # the read-out column names the hook
    assert f"| gpt2-8-2-cpu | dep | id | {last} | 8 | 0.880 [" in text  # last layer 7: 0.95 - 0.07
    dep = [line for line in text.splitlines() if line.startswith(f"| gpt2-8-2-cpu | dep | id | {last} | 8 |")][0]
    assert "| 0.850 | 0.800 | 0.080 |" in dep  # majority, control task, selectivity = 0.88 - 0.80
    assert "| gpt2-4-2-cpu | nece_next | reask op=20 | blocks.3.hook_resid_post | 8 |" in text
    assert "| gpt2-8-2-cpu | random-init | id | 0-7 | 3200 | layer 7: t=1: 0.500," in text
    assert "  > Figure 3 (Physics of LMs 2.1, Fig. 3)" in text
    assert f"[fig3.png]({os.path.relpath(out / 'fig3.png', tmp_path)})" in text
    assert "| gpt2-4-2-cpu | 200 |" in text  # training: last step


# ============================================================================================== command
def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    from probekit.figures.command import register

    parser = argparse.ArgumentParser(prog="probekit")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = args.func(args)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def experiment(tmp_path, store):
    results = tmp_path / "results"
    results.mkdir()
    store.to_parquet(results / "results.parquet")
    path = tmp_path / "exp.yaml"
    path.write_text(
        f"name: cpu-small\nresults: {results}\nfigures:\n  fig9:\n  fig7a: {{layer: 2}}\n  fig4: {{}}\n"
        "accuracy: {n: 10}\n"
    )
    return path, results


def test_command_json_lists_written_figures(experiment):
    path, results = experiment
    status, out, err = _run_cli(["figures", str(path), "--json"])
    assert status == 0, err
    listed = json.loads(out)
    assert [d["figure"] for d in listed] == ["fig9", "fig7a", "fig4"]
    for entry in listed:
        assert set(entry) == {"figure", "files", "skipped", "n_rows"} and entry["skipped"] is None
        assert all(f.startswith(str(results / "figures")) for f in entry["files"])
    assert (
        "read-out blocks.2.hook_resid_post (block 2, before the final norm), rank 8"
        in (results / "figures" / "fig7a.txt").read_text()
    )
    assert (results / "figures" / "REPORT.md").is_file()
    assert "fig9" in err and "written  3 files" in err


def test_command_only_out_and_quiet(experiment, tmp_path):
    path, _ = experiment
    status, out, err = _run_cli(
        ["figures", str(path), "--only", "step_fit,stability", "--out", str(tmp_path / "o"), "--quiet"]
    )
    assert (status, out, err) == (0, "", "")
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "REPORT.md",
        "stability.pdf",
        "stability.png",
        "stability.txt",
        "step_fit.pdf",
        "step_fit.png",
        "step_fit.txt",
    ]


def test_command_reports_skipped_figures(tmp_path, store, monkeypatch):
    results = tmp_path / "out" / "exp"
    results.mkdir(parents=True)
    store[store["kind"] == "train"].to_parquet(results / "results.parquet")
    (tmp_path / "exp.yaml").write_text("name: exp\n")
    monkeypatch.chdir(tmp_path)  # results default to out/<name>, relative to the working directory
    status, out, err = _run_cli(["figures", "exp.yaml", "--json", "--only", "fig3,fig9"])
    assert status == 0
    assert [(d["figure"], d["skipped"], d["files"]) for d in json.loads(out)] == [
        ("fig3", "no 'accuracy' rows in the results store", []),
        ("fig9", "no 'accuracy' rows in the results store", []),
    ]
    assert "skipped  no 'accuracy' rows" in err
    assert "## Training" in (results / "figures" / "REPORT.md").read_text()


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("name: [a]\n", "name must be a word of letters"),
        ("results: [3]\n", "results expects a string or null"),
        (
            "name: x\nfigures: [fig3, fig99]\n",
            "figures: unknown figure 'fig99' (did you mean 'fig9'?); allowed: fig1, fig3",
        ),
        ("name: x\nfigures: fig3\n", "figures must be a list of figure names or a mapping"),
        ("name: x\nfigures: {fig3: 1}\n", "figures must be a list of figure names or a mapping name -> options"),
        ("name: x\nfigures: {fig3: {bins: 3}}\n", "figure fig3 has no option(s) bins"),
        ("name: x\nprobe: {tasks: [nec]}\n", "probe.tasks: unknown value 'nec'"),
        ("- a\n- b\n", "expected a mapping of keys"),
        ("name: x\n  bad: [\n", "not valid YAML"),
    ],
)
def test_command_rejects_bad_experiment_files(tmp_path, yaml_text, message):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml_text)
    status, out, err = _run_cli(["figures", str(path)])
    assert status == 2 and out == ""
    assert message in err, err


def test_command_errors_on_missing_files(tmp_path):
    status, _, err = _run_cli(["figures", str(tmp_path / "nope.yaml")])
    assert status == 2 and f"no sweep config file '{tmp_path / 'nope.yaml'}'" in err
    path = tmp_path / "exp.yaml"
    path.write_text(f"name: x\nresults: {tmp_path / 'r'}\n")
    status, _, err = _run_cli(["figures", str(path)])
    assert status == 2
    assert f"no results store at {tmp_path / 'r' / 'results.parquet'}: run `probekit run {path}` first" in err
    status, _, err = _run_cli(["figures", str(path), "--only", "fig3,nope"])
    assert status == 2 and "unknown figure(s) 'nope'; allowed: fig1" in err


def test_the_report_lists_the_jobs_without_rows_and_why(tmp_path):
    """A failed job and a job never run do not vanish from REPORT.md: both are listed with their reason and log."""
    from probekit.figures.report import write_report
    from probekit.sweep.store import ResultsStore

    store = ResultsStore(tmp_path)
    jobs = [{"job_id": f"accuracy-m-{i}", "kind": "accuracy", "checkpoint": "m"} for i in range(3)]
    store.write_jobs(jobs)
    store.write_job(
        "accuracy-m-0", [{"job_id": "accuracy-m-0", "kind": "accuracy", "checkpoint": "m", "accuracy": 0.5}]
    )
    store.write_failure("accuracy-m-1", "accuracy-m-1: accuracy job failed (ValueError: planted)\ntraceback ...")
    missing = store.missing_jobs()
    assert [m["job_id"] for m in missing] == ["accuracy-m-1", "accuracy-m-2"]
    assert missing[0]["reason"] == "accuracy-m-1: accuracy job failed (ValueError: planted)"
    assert missing[1]["reason"].startswith("not run yet")
    store.merge()
    text = write_report(store.read(), tmp_path / "figures", [], missing).read_text()
    assert "## Jobs without rows (2)" in text
    assert "ValueError: planted" in text and str(tmp_path / "work" / "accuracy-m-2" / "log.txt") in text


# ---------------------------------------------------------------------------- paper fidelity (issue 15, probes)
def _probe_row(ckpt, hook, layer, accuracy, **extra) -> dict:
    return {
        **_common(ckpt, "probe", f"probe-{ckpt}-{hook}-{extra.get('seed', 0)}"),
        "task": "nece",
        "layer": layer,
        "hook": hook,
        "rank": 8,
        "test_set": "id",
        "accuracy": accuracy,
        "majority": 0.6,
        "n": 100,
        "n_pos": 40,
        "seed": 0,
        **extra,
    }


def test_fig7a_shows_the_readout_after_the_final_norm_and_names_it(tmp_path):
    """The paper reads the last hidden state after the final norm: ln_final.hook_out is preferred over the last
    block's resid_post (a string layer label beside block indices), and the caption names the hook read."""
    from probekit.figures.probing import probe_table

    ckpt = "gpt2-4-2-cpu"
    rows = pd.DataFrame(
        [
            _probe_row(ckpt, "blocks.3.hook_resid_post", 3, 0.7),
            _probe_row(ckpt, "ln_final.hook_out", "ln_final.hook_out", 0.9),
        ]
    )
    picked, table = probe_table(rows)
    assert set(picked["hook"]) == {"ln_final.hook_out"} and table["acc_all"].tolist() == [0.9]
    assert set(probe_table(rows, layer=3)[0]["hook"]) == {"blocks.3.hook_resid_post"}  # still selectable
    (result,) = render(rows, ["fig7a"], tmp_path)
    text = (tmp_path / "fig7a.txt").read_text()
    assert result.skipped is None and "read-out ln_final.hook_out (after the final norm), rank 8" in text


def test_probe_cells_average_seeds_and_carry_the_problem_bootstrap():
    """Seeds share test problems: the cell is the mean over seeds with the mean of the rows' bootstrap intervals,
    not a Wilson interval on counts summed over seeds (which double-counts the same problems)."""
    from probekit.figures.probing import pooled_probes

    ckpt = "gpt2-4-2-cpu"
    hook = "ln_final.hook_out"
    rows = pd.DataFrame(
        [
            _probe_row(ckpt, hook, hook, 0.6, seed=0, ci_low=0.45, ci_high=0.75),
            _probe_row(ckpt, hook, hook, 0.8, seed=1, ci_low=0.65, ci_high=0.95),
        ]
    )
    (cell,) = pooled_probes(rows).to_dict("records")
    assert cell["acc_all"] == pytest.approx(0.7) and cell["seeds"] == 2 and cell["n_all"] == 100
    assert (cell["low_all"], cell["high_all"]) == pytest.approx((0.55, 0.85))
    # a row without an interval (bootstrap off) falls back to its own Wilson interval, not to pooled counts
    (plain,) = pooled_probes(rows.drop(columns=["ci_low", "ci_high"]).iloc[:1]).to_dict("records")
    assert (plain["low_all"], plain["high_all"]) == pytest.approx(wilson_interval(60, 100))


def _depth_row(ckpt, model, layer, distance, accuracy, **extra) -> dict:
    return {
        **_common(ckpt, "depth", f"depth-{ckpt}-{model}-{extra.get('seed', 0)}", model),
        "layer": layer,
        "hook": f"blocks.{layer}.hook_resid_post",
        "distance": distance,
        "n": 50,
        "n_correct": round(50 * accuracy),
        "accuracy": accuracy,
        "ci_low": accuracy - 0.1,
        "ci_high": min(1.0, accuracy + 0.1),
        "accuracy_neg": 0.3,
        "ci_low_neg": 0.2,
        "ci_high_neg": 0.4,
        "n_neg": 80,
        "train_prior": 0.45,
        "rank": 0,
        "probe": "linear",
        "test_set": "id",
        **extra,
    }


def test_fig10_shows_nece_false_accuracy_the_prior_and_the_probe_kind(tmp_path):
    from probekit.figures.depth import _matrix, depth_table

    ckpt = "gpt2-4-2-cpu"
    rows = pd.DataFrame(
        [_depth_row(ckpt, "pretrained", layer, d, 0.9, seed=s) for layer in range(2) for d in (1, 2) for s in (0, 1)]
    )
    _, table = depth_table(rows)
    matrix, xlabels, layers = _matrix(table)
    assert xlabels == [1, 2, "false"] and layers == [0, 1]
    assert matrix[:, -1].tolist() == pytest.approx([0.3, 0.3])
    assert table["n"].tolist() == [50] * 4  # averaged over the two seeds, not summed
    (result,) = render(rows, ["fig10"], tmp_path)
    text = (tmp_path / "fig10.txt").read_text()
    assert result.skipped is None
    assert "linear rank 0 (a linear probe on frozen features, not the paper's rank-8 V-probe)" in text
    assert "Training prior P(nece = true): 0.45" in text and "before the final norm" in text


def test_fig8a_draws_the_paper_population_per_model(tmp_path, store):
    """Fig. 8(a): unnecessary parameters written in correct solutions (the paper's population), the pooled
    version as its own series; pretrained and random-init rows are never summed into one panel."""
    from probekit.figures.mistakes import FIG8A, _panels, mistake_rows

    assert [g.group for g in FIG8A][:2] == ["written_unnecessary", "written_unnecessary_pooled"]
    rows = store[store["kind"] == "mistakes"]
    both = pd.concat([rows, rows.assign(model="random-init", job_id=rows["job_id"] + "-r")], ignore_index=True)
    picked = mistake_rows(both, "unnecessary", "n_pred_true")
    titles = [title for title, _ in _panels(picked)]
    assert len(titles) == 2 * len(CHECKPOINTS) and any("(random-init)" in t for t in titles)
    render(both, ["fig8a"], tmp_path)
    text = (tmp_path / "fig8a.txt").read_text()
    assert "well-formed sentence in a correct solution" in text and "bootstrap over solutions" in text


def test_accuracy_figures_and_the_report_never_pool_decodings(tmp_path):
    """Figs. 3-5 and REPORT.md are greedy (the paper's); beam-sample rows feed only Fig. 9's best-of cells."""
    from probekit.figures.accuracy import accuracy_table

    greedy = {"kind": "accuracy", "checkpoint": "m", "preset": "med", "format": "pq", "set": "op=3", "n": 10}
    rows = pd.DataFrame(
        [
            {**greedy, "correct": 2},
            {**greedy, "correct": 9, "decoding": "beam-sample"},
        ]
    )
    _, table = accuracy_table(rows)
    assert table[["n", "correct"]].values.tolist() == [[10, 2]]
    _, both = accuracy_table(rows, decoding=None)
    assert both[["decoding", "correct"]].values.tolist() == [["greedy", 2], ["beam-sample", 9]]
