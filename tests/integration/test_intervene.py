"""``probekit intervene`` on the tiny model: the edits reach every position of a forward, the job returns one row
per direction plus the baseline, and the command's JSON, output file and failures."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from clitools import assert_clean_failure, records_of, run_cli  # noqa: E402

from probekit.causal.directions import interventions, probe_direction  # noqa: E402
from probekit.causal.edits import run_with_edits  # noqa: E402
from probekit.causal.interventions import ROW_COLUMNS, InterveneSpec, run_intervention  # noqa: E402
from probekit.checkpoint import save_checkpoint  # noqa: E402

SMALL = dict(n_train=6, n_test=3, per_problem=4, steps=20, sets="2", n_eval=3, max_new_tokens=12, bootstrap=20)
"""A quick run: a few probe problems, three op-2 problems, 12 new tokens."""
SMALL_CLI = "--n-train 6 --n-test 3 --steps 20 --sets 2 --n 3 --max-new-tokens 12 --bootstrap 20".split()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tok, gpt2):
    return save_checkpoint(gpt2, tok, tmp_path_factory.mktemp("intervene") / "ckpt", {"data": {"preset": "med"}})


def test_ablation_reaches_every_position_of_a_forward(gpt2):
    """Inside the model (edits.run_with_edits), the ablated residual stream has the constant projection at every
    position, and the later blocks see it (the logits change)."""
    from probekit.igsm.generate import GenerationConfig
    from probekit.probe.data import examples_from_config
    from probekit.probe.vprobe import VProbe

    data = examples_from_config(GenerationConfig("med", op=2, seed=0), 6, tasks="nece", per_problem=4)
    probe = VProbe("nece", rank=0, layer=0, steps=20, batch_size=16).fit(gpt2, data)
    direction = probe_direction(probe)
    iv = interventions(direction, probe.transform(data), n_random=10)[0]
    ids = torch.tensor([data.ids[0].tolist()])
    hook = "blocks.0.hook_resid_post"
    plain, _ = run_with_edits(gpt2, ids)
    logits, captured = run_with_edits(gpt2, ids, {hook: iv.edit()}, capture=[hook])
    projection = captured[hook][0] @ iv.unit
    assert torch.allclose(projection, torch.full_like(projection, iv.value), atol=1e-4)
    assert not torch.allclose(logits, plain)


def test_run_returns_one_row_per_direction_and_the_baseline(ckpt):
    rows = run_intervention(InterveneSpec(str(ckpt), layer=1, device="cpu", progress=False, **SMALL))
    assert [r["direction"] for r in rows] == ["none", "probe", *["random"] * 10]
    assert [r["direction_index"] for r in rows] == [None, 0, *range(10)]
    for row in rows:
        assert set(ROW_COLUMNS) <= row.keys()
        assert row["n"] == 3 and row["hook"] == "blocks.1.hook_resid_post" and row["layer"] == 1
        assert row["mode"] == "ablate" and row["ablate_value"] == "mean" and row["task"] == "nece"
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["probe_accuracy"] <= 1
    none, probe, random = rows[0], rows[1], rows[2:]
    # ablation removes the probe direction: its logit on ablated states is constant, not for random directions
    assert probe["probe_logit_std"] < 1e-4 * max(none["probe_logit_std"], 1e-3)
    assert all(r["probe_logit_std"] > 10 * probe["probe_logit_std"] for r in random)
    majority = probe["probe_majority"]  # ... so it gives one answer: the accuracy of a constant guess
    assert min(abs(probe["probe_accuracy"] - majority), abs(probe["probe_accuracy"] - (1 - majority))) < 1e-9
    assert probe["cosine_with_probe"] == pytest.approx(1.0)
    assert any(r["solutions_changed"] > 0 for r in rows[1:])  # the edit reaches generation
    assert {"accuracy_p_value", "accuracy_rank", "probe_accuracy_p_value"} <= probe.keys()
    assert none["solutions_changed"] == 0.0 and none["delta_accuracy"] == 0.0
    json.dumps(rows, allow_nan=False)  # valid JSON: NaN became null


@pytest.mark.slow
def test_cli_json_and_out(tmp_path, ckpt):
    out = tmp_path / "rows.jsonl"
    proc = run_cli(
        "intervene",
        ckpt,
        "--layer",
        "-1",
        "--mode",
        "steer",
        "--strength",
        "2",
        "--n-random",
        "10",
        *SMALL_CLI,
        "--device",
        "cpu",
        "--skip-checks",
        "--out",
        out,
        "--json",
        "--quiet",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 12 and records_of(out) == rows
    assert {r["strength"] for r in rows} == {2.0} and rows[1]["hook"] == "blocks.1.hook_resid_post"
    assert "probe rank" in proc.stderr and "random mean" in proc.stderr  # the summary table on stderr


@pytest.mark.parametrize(
    "options, rc, message",
    [
        (["--task", "depth"], 1, "unknown probe task"),
        (["--n-random", "0"], 2, "--n-random must be >= 1"),
        (["--layer", "9"], 1, "out of range"),
    ],
)
def test_bad_inputs_fail_in_one_line(ckpt, options, rc, message):
    proc = run_cli("intervene", ckpt, *options, *SMALL_CLI, "--device", "cpu", "--skip-checks", "--quiet")
    assert_clean_failure(proc, rc)
    assert message in proc.stderr and proc.stderr.count("error") == 1, proc.stderr


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"task": "value"}, "binary"),
        ({"probe": "nowhere"}, "no saved probe"),
        ({"layer": "blocks.7.hook_resid_post"}, "unknown layer"),
        ({"mode": "erase"}, "mode must be one of"),
        ({"positions": "solution"}, "positions must be one of"),
        ({"strength": float("nan")}, "strength must be a finite"),
    ],
)
def test_bad_settings_fail_before_any_work(ckpt, settings, message):
    with pytest.raises(ValueError, match=message):
        InterveneSpec(str(ckpt), **settings).check()


def test_a_saved_probe_must_match_the_task(tmp_path, ckpt):
    from probekit.igsm.generate import GenerationConfig
    from probekit.probe.data import examples_from_config
    from probekit.probe.vprobe import VProbe

    data = examples_from_config(GenerationConfig("med", op=2, seed=0), 3, tasks="known", per_problem=4)
    VProbe("known", rank=0, layer=1, steps=2, batch_size=8).fit(str(ckpt), data).save(tmp_path / "probe")
    with pytest.raises(ValueError, match="not 'nece'"):
        run_intervention(InterveneSpec(str(ckpt), probe=str(tmp_path / "probe"), device="cpu", progress=False, **SMALL))
    rows = run_intervention(
        InterveneSpec(
            str(ckpt),
            task="known",
            probe=str(tmp_path / "probe"),
            n_random=1,
            device="cpu",
            progress=False,
            skip_checks=True,
            **SMALL,
        )
    )
    assert [r["direction"] for r in rows] == ["none", "probe", "random"]
    assert rows[1]["hook"] == "blocks.1.hook_resid_post" and rows[1]["task"] == "known"
