"""Tests for probekit.figures.scaling and .tables: the data-scaling figures and their tables (Xwin-Math Figs. 1,
3, 4, 5 and Table 4).

The fabricated store holds checkpoints trained from scratch on 1000, 4000, 16000 and unlimited problems, two
fine-tuned ones (1000, 16000 problems) and one resampled by length (16000 problems, from scratch), two
training seeds at 4000 problems, each evaluated on three sets with two seeds; seed 0 is sampled.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from probekit.evaluate.metrics import fit_step_accuracy, wilson_interval
from probekit.figures.registry import NoData, render

SCALING = ["scaling_accuracy", "scaling_stability", "scaling_steps", "scaling_errors"]
#: checkpoint -> (train_n_problems, train_init_from, train_resample, step accuracy, calculation share)
RUNS = {
    "s-1k": (1000, None, "none", 0.90, 0.60),
    "s-4k-a": (4000, None, "none", 0.94, 0.45),
    "s-4k-b": (4000, None, "none", 0.95, 0.45),
    "s-16k": (16000, None, "none", 0.97, 0.30),
    "s-inf": (None, None, "none", 0.985, 0.20),
    "ft-1k": (1000, "s-inf", "none", 0.96, 0.40),
    "ft-16k": (16000, "s-inf", "none", 0.985, 0.25),
    "s-16k-len": (16000, None, "length", 0.975, 0.30),
}
SETS = {"op<=15": (None, False), "op=20": (20, False), "reask op=20": (20, True)}


SHAS = {c: f"{i:02d}" + "ab" * 31 for i, c in enumerate(RUNS)}


def make_scaling_store(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for ckpt, (size, init, resample, p, calc_share) in RUNS.items():
        for name, (op, reask) in SETS.items():
            for eval_seed in (0, 1):
                ops = range(1, 16) if op is None else [op]
                by_op = {}
                for o in ops:
                    n = int(rng.integers(20, 50))
                    by_op[str(o)] = [n, int(rng.binomial(n, p**o))]
                n = sum(v[0] for v in by_op.values())
                k = sum(v[1] for v in by_op.values())
                wrong = n - k
                fmt = int(wrong * 0.1)
                calc = round((wrong - fmt) * calc_share)
                low, high = wilson_interval(k, n)
                sampled = eval_seed == 0
                position = 0.5 + 4 * (p - 0.9)
                rows.append(
                    {
                        "job_id": f"eval-{ckpt}-{eval_seed}",
                        "kind": "accuracy",
                        "sweep": "scaling",
                        "checkpoint": ckpt,
                        "checkpoint_sha256": SHAS[ckpt],
                        "revision": "0.2.0+def5678",
                        "n_layer": 4,
                        "d_model": 128,
                        "train_n_problems": size,
                        "train_init_from": init,
                        "train_resample": resample,
                        "set": name,
                        "preset": "med",
                        "format": "pq",
                        "op": op,
                        "reask": reask,
                        "seed": eval_seed,
                        "n": n,
                        "correct": k,
                        "accuracy": k / n,
                        "ci_low": low,
                        "ci_high": high,
                        "accuracy_by_op": json.dumps(by_op),
                        "first_error_position": position,
                        "first_error_position_ci_low": position - 0.05,
                        "first_error_position_ci_high": position + 0.05,
                        "errors_calculation": calc,
                        "errors_reasoning": wrong - fmt - calc,
                        "errors_format": fmt,
                        "error_share_calculation": calc / (wrong - fmt) if wrong - fmt else math.nan,
                        "samples": 16 if sampled else math.nan,
                        "temperature": 0.7 if sampled else math.nan,
                        "pass_at_1": k / n if sampled else math.nan,
                        "pass_at_n": (k + (n - k) * 3 // 4) / n if sampled else math.nan,  # 3/4 of the failures solved
                        "pass_at_n_ci_low": 0.85 if sampled else math.nan,
                        "pass_at_n_ci_high": 0.99 if sampled else math.nan,
                        "pass_ratio_at_n": k / n - 0.02 if sampled else math.nan,
                        "pass_ratio_ci_low": k / n - 0.06 if sampled else math.nan,
                        "pass_ratio_ci_high": k / n + 0.02 if sampled else math.nan,
                    }
                )
    table = pd.DataFrame(rows)
    table["op"] = table["op"].astype("Int64")
    table["train_n_problems"] = table["train_n_problems"].astype("Int64")
    # another kind in the same store (its rows must be ignored)
    train = pd.DataFrame([{"kind": "train", "checkpoint": "s-1k", "step": 10, "loss": 1.0}])
    return pd.concat([table, train], ignore_index=True)


@pytest.fixture(scope="module")
def store() -> pd.DataFrame:
    return make_scaling_store()


@pytest.fixture(scope="module")
def rendered(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("scaling")
    return out, {fr.name: fr for fr in render(store, SCALING, out)}


def _pooled_counts(store: pd.DataFrame, checkpoints, *, reask: bool = False):
    rows = store[(store["kind"] == "accuracy") & store["checkpoint"].isin(checkpoints)]
    if not reask:
        rows = rows[~rows["reask"].astype(bool)]
    bins: dict[int, list[int]] = {}
    for raw in rows["accuracy_by_op"]:
        for op, (n, k) in json.loads(raw).items():
            cell = bins.setdefault(int(op), [0, 0])
            cell[0] += n
            cell[1] += k
    ops = sorted(bins)
    return rows, ops, [bins[o][0] for o in ops], [bins[o][1] for o in ops]


# ============================================================================================== rendering
@pytest.mark.slow
def test_every_scaling_figure_writes_files_naming_checkpoints_and_sizes(rendered, store):
    out, results = rendered
    accuracy_rows = int((store["kind"] == "accuracy").sum())
    for name in SCALING:
        fr = results[name]
        assert fr.skipped is None, (name, fr.skipped)
        assert sorted(p.name for p in fr.paths) == [f"{name}.pdf", f"{name}.png", f"{name}.txt"]
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
        assert fr.n_rows == accuracy_rows
        text = (out / f"{name}.txt").read_text()
        for ckpt in RUNS:
            assert f"{ckpt} (sha256 {SHAS[ckpt][:12]})" in text, (name, ckpt)
        assert "revision(s): 0.2.0+def5678" in text and "Units:" in text and "n per cell:" in text
        for size in (
            "1000 training problems",
            "4000 training problems",
            "16000 training problems",
            "unlimited training data",
        ):
            assert size in text, (name, size)
        assert "from scratch at 4000 training problems: s-4k-a, s-4k-b" in text
        assert "fine-tuned at 16000 training problems: ft-16k (fine-tuned from s-inf)" in text
        assert "from scratch, resampled by length at 16000 training problems: s-16k-len" in text


def test_scaling_accuracy_pools_cells_with_wilson_and_pass_at_n(store, rendered):
    from probekit.figures.tables import scaling_table

    out, _ = rendered
    _, cells, table = scaling_table(store)
    assert list(cells["run"].unique()) == ["from scratch", "from scratch, resampled by length", "fine-tuned"]
    assert list(cells.loc[cells["run"] == "from scratch", "data_size"]) == [1000, 4000, 16000, math.inf]
    cell = table[(table["checkpoint"] == "from scratch @ 4000") & (table["set"] == "op=20")].iloc[0]
    raw = store[store["checkpoint"].isin(["s-4k-a", "s-4k-b"]) & (store["set"] == "op=20")]
    n, k = int(raw["n"].sum()), int(raw["correct"].sum())
    assert (cell["n"], cell["correct"]) == (n, k)
    assert (cell["ci_low"], cell["ci_high"]) == pytest.approx(wilson_interval(k, n))
    sampled = raw[raw["seed"] == 0]
    solved = sampled["correct"] + (sampled["n"] - sampled["correct"]) * 3 // 4
    assert cell["pass_at_n"] == pytest.approx(solved.sum() / sampled["n"].sum())
    assert (cell["pass_at_n_ci_low"], cell["pass_at_n_ci_high"]) == pytest.approx(
        wilson_interval(solved.sum(), sampled["n"].sum())
    )
    text = (out / "scaling_accuracy.txt").read_text()
    assert "stars = Pass@16" in text


def test_scaling_stability_caption(rendered):
    out, _ = rendered
    text = (out / "scaling_stability.txt").read_text()
    assert "Pass@16" in text and "PassRatio@16" in text and "temperature 0.7" in text


def test_step_accuracy_per_data_size_is_the_refit_on_pooled_counts(store, rendered):
    from probekit.figures.tables import step_table

    out, _ = rendered
    rows, ops, n, k = _pooled_counts(store, ["s-4k-a", "s-4k-b"])
    fit = fit_step_accuracy(ops, n, k)
    _, cells, fits = step_table(store)
    assert fits["from scratch @ 4000"][1].step_accuracy == fit.step_accuracy
    assert list(fits["from scratch @ 4000"][0][1]) == n
    wrong = rows["n"] - rows["correct"]
    position = float((rows["first_error_position"] * wrong).sum() / wrong.sum())
    low = float((rows["first_error_position_ci_low"] * wrong).sum() / wrong.sum())
    cell = cells[cells["cell"] == "from scratch @ 4000"].iloc[0]
    assert cell["first_error"] == pytest.approx(position) and cell["first_error_low"] == pytest.approx(low)
    text = (out / "scaling_steps.txt").read_text()
    row = (
        f"| from scratch | 4000 | {fit.step_accuracy:.4f} [{fit.ci_low:.4f}, {fit.ci_high:.4f}] | "
        f"{position:.3f} [{low:.3f}, "
    )
    assert row in text
    assert f"| {fit.n} | {len(ops)} | s-4k-a, s-4k-b |" in text
    # the step accuracy grows with the data size, and the first error moves later (Table 4)
    scratch = cells[cells["run"] == "from scratch"]
    steps = [fits[c][1].step_accuracy for c in scratch["cell"]]
    assert steps == sorted(steps) and list(scratch["first_error"]) == sorted(scratch["first_error"])


def test_resampling_panel_compares_at_the_common_data_size(store, rendered, tmp_path):
    from probekit.figures.scaling import resampling_pairs
    from probekit.figures.tables import step_table

    out, _ = rendered
    _, cells, _ = step_table(store)
    pairs = resampling_pairs(cells)
    assert list(pairs["cell"]) == ["from scratch @ 16000", "from scratch, resampled by length @ 16000"]
    assert "Resampling panel: per init, the largest data size" in (out / "scaling_steps.txt").read_text()
    plain = store[store["train_resample"] != "length"]
    (fr,) = render(plain, ["scaling_steps"], tmp_path)
    assert fr.skipped is None
    text = (tmp_path / "scaling_steps.txt").read_text()
    assert "No resampling comparison" in text and "s-16k-len" not in text


def test_calculation_share_is_the_hand_ratio(store, rendered, tmp_path):
    from probekit.figures.tables import error_table

    out, _ = rendered
    rows = store[(store["checkpoint"] == "s-1k") & ~store["reask"].astype(bool)]
    calc, reason = int(rows["errors_calculation"].sum()), int(rows["errors_reasoning"].sum())
    fmt, wrong = int(rows["errors_format"].sum()), int((rows["n"] - rows["correct"]).sum())
    share = calc / (calc + reason)
    low, high = wilson_interval(calc, calc + reason)
    _, cells = error_table(store)
    cell = cells[cells["cell"] == "from scratch @ 1000"].iloc[0]
    assert (cell["calculation"], cell["reasoning"], cell["format"], cell["wrong"]) == (calc, reason, fmt, wrong)
    assert cell["share"] == pytest.approx(share)
    text = (out / "scaling_errors.txt").read_text()
    assert (
        f"from scratch at 1000 training problems: calculation {calc}, reasoning {reason}, format {fmt} of {wrong} "
        f"wrong solutions, calculation share {share:.3f} [{low:.3f}, {high:.3f}]"
    ) in text
    # calculation errors fall faster than reasoning errors as the data grows (Fig. 5)
    scratch = cells[cells["run"] == "from scratch"]
    assert list(scratch["share"]) == sorted(scratch["share"], reverse=True)
    # one set only, by option (either spelling)
    (fr,) = render(store, ["scaling_errors"], tmp_path, {"scaling_errors": {"set": "op=20"}})
    assert fr.skipped is None and "evaluation set op=20" in (tmp_path / "scaling_errors.txt").read_text()
    (fr,) = render(store, ["scaling_errors"], tmp_path, {"scaling_errors": {"set": "op=99"}})
    assert fr.skipped.startswith("no accuracy rows with set = 'op=99'")


def test_step_fit_bins_stand_in_for_accuracy_by_op(store):
    from probekit.figures.tables import step_table

    bins = [
        json.dumps(
            [
                {"op": int(o), "n": n, "correct": k, "predicted": 0.5, "residual": 0.0}
                for o, (n, k) in json.loads(raw).items()
            ]
        )
        if isinstance(raw, str)
        else None
        for raw in store["accuracy_by_op"]
    ]
    swapped = store.assign(step_fit_bins=bins).drop(columns=["accuracy_by_op"])
    _, _, fits = step_table(swapped)
    _, _, expected = step_table(store)
    assert {c: f.step_accuracy for c, (_, f) in fits.items()} == {c: f.step_accuracy for c, (_, f) in expected.items()}


def test_size_axis_puts_unlimited_at_the_right_end():
    from probekit.figures.scaling import size_positions
    from probekit.figures.tables import size_label

    positions = size_positions([16000.0, math.inf, 1000.0, 4000.0])
    assert positions == {1000.0: 1000.0, 4000.0: 4000.0, 16000.0: 16000.0, math.inf: 64000.0}
    assert [size_label(s, short=True) for s in positions] == ["1K", "4K", "16K", "unlimited"]
    assert size_label(7500, short=True) == "7.5K" and size_label(7500) == "7500"


def test_init_and_shape_labels():
    from probekit.figures.tables import cells_of, scaling_rows

    store = make_scaling_store()
    store.loc[store["checkpoint"] == "ft-1k", "train_init_from"] = "other-base"
    rows = scaling_rows(store)
    assert set(rows["init"]) == {"from scratch", "fine-tuned from s-inf", "fine-tuned from other-base"}
    store.loc[store["checkpoint"] == "s-1k", "n_layer"] = 8
    assert "from scratch, 8-layer 128-dim @ 1000" in set(cells_of(scaling_rows(store))["cell"])
    # without train_init_from / train_resample every run is from scratch, not resampled
    bare = make_scaling_store().drop(columns=["train_init_from", "train_resample"])
    assert set(scaling_rows(bare)["run"]) == {"from scratch"}


# ============================================================================================== report
def test_report_has_a_data_scaling_table(store, tmp_path):
    from probekit.figures.report import write_report

    text = write_report(store, tmp_path, []).read_text()
    assert "## Data scaling" in text and text.index("## Generation accuracy") < text.index("## Data scaling")
    rows, ops, n_op, k_op = _pooled_counts(store, ["s-1k"])
    n, k = int(rows["n"].sum()), int(rows["correct"].sum())
    low, high = wilson_interval(k, n)
    fit = fit_step_accuracy(ops, n_op, k_op)
    calc, reason = int(rows["errors_calculation"].sum()), int(rows["errors_reasoning"].sum())
    slow, shigh = wilson_interval(calc, calc + reason)
    sampled = rows[rows["seed"] == 0]
    solved = (sampled["correct"] + (sampled["n"] - sampled["correct"]) * 3 // 4).sum() / sampled["n"].sum()
    assert (
        f"| from scratch | 1000 | s-1k | {n} | {k / n:.3f} [{low:.3f}, {high:.3f}] | {solved:.3f} (N=16) | "
    ) in text
    assert (
        f"| {fit.step_accuracy:.3f} [{fit.ci_low:.3f}, {fit.ci_high:.3f}] | 0.500 | "
        f"{calc / (calc + reason):.3f} [{slow:.3f}, {shigh:.3f}] |"
    ) in text
    assert "| fine-tuned | unlimited |" not in text and "| from scratch | unlimited | s-inf |" in text
    # a store without training data sizes has no such section
    assert "## Data scaling" not in write_report(store.drop(columns=["train_n_problems"]), tmp_path, []).read_text()


# ============================================================================================== NoData
def test_missing_columns_and_rows_are_skipped_with_a_reason(store, tmp_path):
    def skipped(table, names=SCALING):
        return {fr.name: fr.skipped for fr in render(table, names, tmp_path)}

    no_size = skipped(store.drop(columns=["train_n_problems"]))
    assert all(reason and "train_n_problems" in reason for reason in no_size.values()), no_size
    assert set(skipped(store[store["kind"] == "train"]).values()) == {"no 'accuracy' rows in the results store"}
    no_errors = skipped(store.drop(columns=["errors_calculation"]), ["scaling_errors", "scaling_accuracy"])
    assert no_errors == {
        "scaling_errors": "the 'accuracy' rows have no values in column(s) errors_calculation",
        "scaling_accuracy": None,
    }
    unsampled = skipped(store.drop(columns=["pass_at_n"]), ["scaling_stability", "scaling_accuracy"])
    assert "sampled evaluations" in unsampled["scaling_stability"] and unsampled["scaling_accuracy"] is None
    assert "Pass@N stars" in (tmp_path / "scaling_accuracy.txt").read_text()
    no_ops = skipped(store.assign(accuracy_by_op=None), ["scaling_steps"])
    assert "accuracy_by_op" in no_ops["scaling_steps"]
    only_reask = skipped(
        store[store["reask"].astype(bool) | (store["kind"] != "accuracy")], ["scaling_steps", "scaling_errors"]
    )
    assert only_reask == {
        "scaling_steps": "no non-reask accuracy rows with accuracy_by_op counts",
        "scaling_errors": "no non-reask accuracy rows with error counts",
    }
    with pytest.raises(NoData, match="must be positive"):
        from probekit.figures.tables import scaling_rows

        scaling_rows(store.assign(train_n_problems=0))
    assert not any(
        (tmp_path / f"{name}.png").exists() for name in ("scaling_steps", "scaling_errors", "scaling_stability")
    )


def test_beam_sample_rows_stay_out_of_the_greedy_scaling_tables(store, tmp_path):
    """The data-scaling tables and Fig. 3 are greedy: a beam-sample evaluation of the same checkpoint and set
    (here all correct) must not be pooled into them."""
    from probekit.figures.tables import scaling_table

    greedy = store[store["kind"] == "accuracy"]
    beam = greedy.assign(decoding="beam-sample", correct=greedy["n"], accuracy=1.0, pass_at_1=1.0)
    mixed = pd.concat([store, beam], ignore_index=True)
    _, _, expected = scaling_table(store)
    _, _, table = scaling_table(mixed)
    assert table["correct"].tolist() == expected["correct"].tolist()
    assert table["n"].tolist() == expected["n"].tolist()
    for name, table in (("greedy", store), ("mixed", mixed)):
        (result,) = render(table, ["stability"], tmp_path / name)
        assert not result.skipped, result.skipped
    assert (tmp_path / "mixed" / "stability.txt").read_text() == (tmp_path / "greedy" / "stability.txt").read_text()
    only_beam = pd.concat([beam, store[store["kind"] != "accuracy"]], ignore_index=True)
    with pytest.raises(NoData, match="greedy"):
        scaling_table(only_beam)
