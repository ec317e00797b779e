"""Activation patching over minimal pairs (``probekit.causal.patching``, ``probekit patch``) on a tiny random
gpt2: a self-patch changes nothing, patching every position at layer 0 reproduces the other run exactly (logits
and greedy answer), roles restore what they carry, unequal pairs are skipped with a reason, the CLI's JSON and
rows agree and bad input fails with one line."""

from __future__ import annotations

import copy
import json
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from clitools import assert_clean_failure, records_of, run_cli, write_jsonl  # noqa: E402

from probekit.causal.edits import replace_at, run_with_edits  # noqa: E402
from probekit.causal.patching import (  # noqa: E402
    SkipPair,
    patch_pair,
    patch_pairs,
    patch_points,
    prepare_pair,
    summarize,
)
from probekit.causal.roles import ROLE_CHOICES  # noqa: E402
from probekit.checkpoint import save_checkpoint  # noqa: E402
from probekit.igsm.generate import GenerationConfig, generate_record  # noqa: E402
from probekit.igsm.pairs import make_pair  # noqa: E402

N_LAYER = 2  # gpt2-tiny


@pytest.fixture(scope="module")
def records() -> list[dict]:
    config = GenerationConfig("med", op=2, seed=11)
    return [generate_record(config, i) for i in range(4)]


@pytest.fixture(scope="module")
def value_pairs(records) -> list[dict]:
    return [make_pair(r, "value", seed=0, index=i) for i, r in enumerate(records)]


@pytest.fixture(scope="module")
def prepared(value_pairs, tok):
    return prepare_pair(value_pairs[0], tok, 0)


def _ids(ids):
    return torch.tensor([ids], dtype=torch.long)


def test_prepared_input_stops_at_the_first_differing_token(prepared, tok):
    assert len(prepared.clean_ids) == len(prepared.counterfactual_ids)
    assert prepared.clean_token != prepared.counterfactual_token
    assert prepared.clean_ids[prepared.prompt_length - 1] == tok.special("[SOLUTION]")
    # the two inputs differ only inside the changed statement
    differ = [i for i, (a, b) in enumerate(zip(prepared.clean_ids, prepared.counterfactual_ids)) if a != b]
    assert differ and all(prepared.roles[i] == "changed" for i in differ)
    assert prepared.first_diff == differ[0]
    assert prepared.info["same_target"] is False


def test_identical_solutions_read_the_answer_token(value_pairs, tok):
    twin = copy.deepcopy(value_pairs[0])
    twin["counterfactual"] = copy.deepcopy(twin["clean"])
    same = prepare_pair(twin, tok)
    assert same.info["same_target"] and same.clean_token == same.counterfactual_token
    assert same.clean_ids[-1] == tok.special("[ANSWER]") and same.first_diff == len(same.clean_ids)


def test_self_patch_changes_nothing(gpt2, prepared):
    ids = _ids(prepared.clean_ids)
    base, captured = run_with_edits(gpt2, ids, capture=patch_points(N_LAYER, ("resid_post", "attn_out", "mlp_out")))
    everywhere = torch.ones(ids.shape[1], dtype=torch.bool)
    for name, act in captured.items():
        logits, _ = run_with_edits(gpt2, ids, {name: replace_at(act, everywhere)})
        assert torch.equal(logits, base), name
    # a pair whose counterfactual run is the clean run: nothing moves, restored is undefined
    self_pair = copy.copy(prepared)
    self_pair.counterfactual_ids = list(prepared.clean_ids)
    rows = patch_pair(gpt2, None, self_pair, patch_points(N_LAYER), generate=False)
    assert len(rows) == (N_LAYER + 2) * len(ROLE_CHOICES)
    for row in rows:
        assert row["ld_clean"] == row["ld_corrupt"]
        assert row["ld_patched"] == pytest.approx(row["ld_clean"], abs=1e-5)
        assert row["undefined"] and math.isnan(row["restored"])


@pytest.mark.parametrize("point", ["embed.hook_out", "blocks.0.hook_resid_post"])
def test_patching_every_position_at_layer_0_reproduces_the_other_run(gpt2, prepared, point):
    clean, cf = _ids(prepared.clean_ids), _ids(prepared.counterfactual_ids)
    cf_logits, captured = run_with_edits(gpt2, cf, capture=[point])
    everywhere = torch.ones(clean.shape[1], dtype=torch.bool)
    patched, _ = run_with_edits(gpt2, clean, {point: replace_at(captured[point], everywhere)})
    assert torch.equal(patched, cf_logits)
    clean_logits, _ = run_with_edits(gpt2, clean)
    assert not torch.equal(clean_logits, cf_logits)


def test_restored_and_greedy_answers_follow_the_patch(gpt2, tok, prepared):
    points = ["embed.hook_out"]
    for direction, expected, run in (("denoise", 1.0, "clean_run_answer"), ("noise", 0.0, "counterfactual_run_answer")):
        rows = patch_pair(gpt2, tok, prepared, points, direction=direction, max_new_tokens=12)
        by_role = {r["role"]: r for r in rows}
        assert set(by_role) == {"changed", "other_statements", "question", "solution", "all"}
        for role in ("all", "changed"):  # the changed statement carries every difference at the embeddings
            assert by_role[role]["restored"] == pytest.approx(expected, abs=1e-4)
            assert by_role[role]["answer_patched"] == by_role[role][run]
        for role in ("other_statements", "question", "solution"):  # identical tokens: no effect
            assert by_role[role]["restored"] == pytest.approx(1.0 - expected, abs=1e-4)
            base = "counterfactual_run_answer" if direction == "denoise" else "clean_run_answer"
            assert by_role[role]["answer_patched"] == by_role[role][base]
    # position mode: one row per point and position from the first differing one; the sum of single-position
    # patches at the embeddings is the changed-statement patch only where the positions differ
    rows = patch_pair(gpt2, tok, prepared, points, positions=True)
    assert [r["position"] for r in rows] == list(range(prepared.first_diff, len(prepared.clean_ids)))
    assert all(r["role"] == prepared.roles[r["position"]] for r in rows)
    same = [r for r in rows if prepared.clean_ids[r["position"]] == prepared.counterfactual_ids[r["position"]]]
    assert same and all(r["restored"] == pytest.approx(0.0, abs=1e-4) for r in same)


def test_unequal_pairs_and_error_lines_are_skipped_with_a_reason(gpt2, tok, value_pairs, records):
    unequal = copy.deepcopy(value_pairs[1])
    other = next(r for r in records if len(r["problem"].split()) != len(unequal["clean"]["problem"].split()))
    unequal["counterfactual"] = other
    with pytest.raises(SkipPair) as err:
        prepare_pair(unequal, tok)
    assert err.value.reason == "unequal_length"
    lines = [(0, value_pairs[0]), (1, unequal), (2, {"kind": "value", "index": 2, "error": "PairError: no constant"})]
    rows = patch_pairs(gpt2, tok, lines, generate=False)
    skipped = {r["pair"]: r["reason"] for r in rows if r["skipped"]}
    assert skipped == {1: "unequal_length", 2: "pair_error"}
    assert sum(not r["skipped"] for r in rows) == (N_LAYER + 2) * len(ROLE_CHOICES)
    cells = summarize(rows, n_boot=50)
    assert len(cells) == (N_LAYER + 2) * len(ROLE_CHOICES) and all(c["n_pairs"] == 1 for c in cells)


@pytest.fixture(scope="module")
def cli_files(gpt2, tok, value_pairs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("patch")
    ckpt = save_checkpoint(gpt2, tok, folder / "ckpt", {})
    unequal = copy.deepcopy(value_pairs[1])
    unequal["counterfactual"] = copy.deepcopy(value_pairs[2]["clean"])
    unequal["counterfactual"]["problem"] += " The number of each X equals 3."
    pairs = write_jsonl(folder / "pairs.jsonl", [value_pairs[0], value_pairs[3], unequal])
    return folder, ckpt, pairs


def test_cli_json_rows_and_figure(cli_files):
    folder, ckpt, pairs = cli_files
    out = folder / "rows.jsonl"
    proc = run_cli(
        "patch", ckpt, "--pairs", pairs, "--points", "resid_post,mlp_out", "--roles", "changed,all",
        "--max-new-tokens", "6", "--bootstrap", "50", "--out", out, "--json", "--quiet", timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    rows = records_of(out)
    per_pair = (N_LAYER + 2 + N_LAYER) * 2
    assert result["rows_written"] == len(rows) == 2 * per_pair + 1
    assert result["counts"] == {"pairs": 3, "patched": 2, "skipped": {"unequal_length": 1}}
    assert len(result["summary"]) == per_pair and all(c["n_pairs"] + c["n_undefined"] == 2 for c in result["summary"])
    decoded = [r for r in rows if not r["skipped"]]
    assert all(isinstance(r["clean_answer_restored"], bool) for r in decoded)

    pd = pytest.importorskip("pandas")
    from probekit.figures.patching import patch_heatmap
    from probekit.figures.registry import NoData

    frame = pd.DataFrame(rows).assign(kind="patch")
    paths = patch_heatmap(frame, folder / "figures", n_boot=50)
    assert [p.suffix for p in paths] == [".png", ".pdf", ".txt"] and all(p.stat().st_size for p in paths)
    assert "2 pairs" in paths[-1].read_text()
    with pytest.raises(NoData):
        patch_heatmap(frame.assign(kind="probe"), folder / "figures")


def test_cli_bad_input_fails_with_one_line(cli_files, records):
    folder, ckpt, pairs = cli_files
    proc = run_cli("patch", ckpt, "--pairs", folder / "missing.jsonl", "--json")
    assert_clean_failure(proc, 1)
    assert "missing.jsonl" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    problems = write_jsonl(folder / "problems.jsonl", records[:1])
    proc = run_cli("patch", ckpt, "--pairs", problems, "--json")
    assert_clean_failure(proc, 1)
    assert "not a pair record" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_generated_problems_are_a_pair_source(cli_files):
    """``--op K`` (what a sweep job runs): test-split problems of K operations, paired until --n pairs."""
    from probekit.causal.patching import PatchSpec, generated_pairs, run_patch

    folder, ckpt, pairs = cli_files
    spec = PatchSpec(str(ckpt), op=2, n=3, pair_kind="value", seed=4, generate=False, roles=("changed",))
    made = generated_pairs(spec)
    assert [i for i, _ in made] == [0, 1, 2]
    assert all(p["kind"] == "value" and p["clean"]["split"] == "test" and p["clean"]["op"] == 2 for _, p in made)
    assert all(p["clean"]["seed"] == 4 for _, p in made)
    rows = run_patch(spec)
    assert {r["pair"] for r in rows} == {0, 1, 2} and {r["role"] for r in rows if not r.get("skipped")} == {"changed"}
    with pytest.raises(ValueError, match="exactly one of"):
        PatchSpec(str(ckpt), pairs=str(pairs), op=2)
    proc = run_cli("patch", ckpt, "--op", "2", "--n", "2", "--no-generate", "--roles", "all", "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["counts"]["pairs"] == 2


def test_edit_points_read_what_the_probes_read_and_sum_to_the_residual_stream(gpt2):
    """``edits`` captures agree with the probes' reader at every residual name, and a block's attention and MLP
    outputs are exactly what it adds to the residual stream (GPT2-rotary is sequential: no parallel residual)."""
    from probekit.causal.edits import hook_name
    from probekit.probe.hooks import hidden_states

    ids = torch.randint(5, 200, (2, 17))
    names = ["embed.hook_out", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "ln_final.hook_out"]
    parts = ["blocks.1.hook_attn_out", "blocks.1.hook_mlp_out"]
    logits, captured = run_with_edits(gpt2, ids, capture=names + parts)
    reference = hidden_states(gpt2, ids, names)
    for name in names:
        assert torch.allclose(captured[name], reference[name], atol=1e-6), name
    total = (
        captured["blocks.0.hook_resid_post"] + captured["blocks.1.hook_attn_out"] + captured["blocks.1.hook_mlp_out"]
    )
    assert torch.allclose(total, captured["blocks.1.hook_resid_post"], atol=1e-5)
    assert torch.equal(logits, gpt2(input_ids=ids).logits)  # capturing changes nothing
    assert (
        hook_name(-1, N_LAYER) == "blocks.1.hook_resid_post" and hook_name("ln_final", N_LAYER) == "ln_final.hook_out"
    )
    with pytest.raises(ValueError, match="2 blocks"):
        hook_name("blocks.2.hook_mlp_out", N_LAYER)
    with pytest.raises(ValueError, match="changed the shape"):
        run_with_edits(gpt2, ids, {"blocks.0.hook_resid_post": lambda act: act[:, :-1]})
