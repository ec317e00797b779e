"""``probekit run``: a job's identity is its settings and the content of what it reads, not a path.

A checkpoint retrained or overwritten at the same path makes the jobs reading it run again (never "already
done" with the old ``checkpoint_sha256``); their old rows are set aside, never merged, and named in the summary,
on stderr and in REPORT.md; an unchanged checkpoint is still skipped, and hashed once per run.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("pandas")

import pandas as pd  # noqa: E402

from probekit.cli import main  # noqa: E402
from probekit.sweep.config import load_sweep  # noqa: E402
from probekit.sweep.execute import run_jobs  # noqa: E402
from probekit.sweep.jobs import expand  # noqa: E402
from probekit.sweep.store import ResultsStore  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _save(folder: Path, seed: int) -> Path:
    """A gpt2-tiny checkpoint of initialisation ``seed`` written to ``folder`` (replacing what is there, as a
    training run re-saving its checkpoint does)."""
    from probekit.checkpoint import save_checkpoint
    from probekit.modeling import build_model, load_model_config
    from probekit.tokenizer import default_tokenizer

    tok = default_tokenizer()
    save_checkpoint(
        build_model(load_model_config("gpt2-tiny"), tok, seed=seed), tok, folder, {"data": {"preset": "med"}}
    )
    return folder


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sweep(tmp_path: Path, ckpt: Path | None, **sections) -> Path:
    data = {
        "name": "ident",
        "results": str(tmp_path / "res"),
        "device": "cpu",
        "checkpoints": {"tiny": str(ckpt)},
        "accuracy": {"sets": ["1"], "n": 2},
        "figures": ["fig3"],
    }
    data.update(sections)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in data.items() if v is not None}))
    return path


def _run(capsys, *argv) -> tuple[dict | list, str]:
    assert main(list(argv)) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_a_checkpoint_retrained_at_the_same_path_reruns_its_job_and_the_report_names_it(tmp_path, capsys):
    ckpt = _save(tmp_path / "ckpt", seed=1)
    path = _sweep(tmp_path, ckpt)
    (job,) = expand(load_sweep(path))
    first, _ = _run(capsys, "run", str(path), "--json", "--quiet")
    assert first["finished"] == 1 and not first.get("replaced")
    old_sha = _sha(ckpt / "model.safetensors")

    _save(ckpt, seed=2)  # retrained: other weights at the same path
    new_sha = _sha(ckpt / "model.safetensors")
    assert new_sha != old_sha
    (listed,), _ = _run(capsys, "run", str(path), "--dry-run", "--json")
    assert not listed["done"] and listed.get("inputs_changed")

    second, err = _run(capsys, "run", str(path), "--json", "--quiet")
    assert second["already_done"] == 0 and second["finished"] == 1 and not second["failed"]
    (record,) = second["replaced"]
    assert record["job_id"] == job.job_id and record["rerun"]
    assert record["old_checkpoint_sha256"] == old_sha and "checkpoint/model.safetensors" in record["changed"]
    assert record["old_inputs_sha256"] != record["new_inputs_sha256"]
    assert f"replaced {job.job_id}: " in err and "1 replaced" in err

    store = ResultsStore(tmp_path / "res")
    frame = store.read()
    # exactly one row-set for the job, that of the new checkpoint
    assert set(frame["job_id"]) == {job.job_id} and len(frame) == len(store.job_rows(job.job_id)) == 1
    assert set(frame["checkpoint_sha256"]) == {new_sha}
    assert [p.stem for p in store.jobs_dir.glob("*.parquet")] == [job.job_id]
    replaces = json.loads(frame["replaces"].item())
    assert replaces["old_checkpoint_sha256"] == old_sha and replaces["old_inputs_sha256"] == record["old_inputs_sha256"]
    assert pd.read_parquet(replaces["old_rows"])["checkpoint_sha256"].item() == old_sha  # set aside, not lost
    assert [r["job_id"] for r in store.replacements()] == [job.job_id]

    # REPORT.md (probekit figures) lists the replaced rows
    assert main(["figures", str(path), "--quiet"]) == 0
    capsys.readouterr()
    report = (tmp_path / "res" / "figures" / "REPORT.md").read_text()
    assert "## Replaced rows (1)" in report
    assert job.job_id in report and old_sha[:12] in report and new_sha[:12] in report

    # unchanged since: skipped, nothing replaced
    third, _ = _run(capsys, "run", str(path), "--json", "--quiet")
    assert third["already_done"] == 1 and third["finished"] == 0 and third["replaced"] == []
    assert len(store.read()) == 1


def test_an_unchanged_checkpoint_is_skipped_and_hashed_once_per_run(tmp_path, monkeypatch):
    from probekit.sweep import inputs as sweep_inputs

    ckpt = _save(tmp_path / "ckpt", seed=1)
    jobs = expand(load_sweep(_sweep(tmp_path, ckpt, accuracy={"sets": ["1", "2"], "n": 2})))
    assert len(jobs) == 2
    reads: collections.Counter[str] = collections.Counter()
    real = sweep_inputs._hash_file
    monkeypatch.setattr(sweep_inputs, "_HASHES", {})
    monkeypatch.setattr(sweep_inputs, "_hash_file", lambda p: (reads.update([Path(p).name]), real(p))[1])
    summary = run_jobs(jobs, tmp_path / "res", device="cpu", progress=False)
    assert sorted(summary.finished) == sorted(j.job_id for j in jobs) and not summary.failed
    assert reads["model.safetensors"] == 1  # two jobs and the rows' checkpoint_sha256: one read
    again = run_jobs(jobs, tmp_path / "res", device="cpu", progress=False)
    assert again.already_done == 2 and not again.finished and not again.replaced
    monkeypatch.setattr(sweep_inputs, "_HASHES", {})  # a new process
    (ckpt / "README.md").write_text("a model card is not an input\n")
    again = run_jobs(jobs, tmp_path / "res", device="cpu", progress=False)
    assert again.already_done == 2 and not again.finished and not again.replaced
    assert reads["model.safetensors"] == 2


def test_weights_overwritten_in_place_with_the_same_size_and_mtime_are_noticed(tmp_path):
    ckpt = _save(tmp_path / "ckpt", seed=1)
    other = _save(tmp_path / "other", seed=2)
    jobs = expand(load_sweep(_sweep(tmp_path, ckpt)))
    assert run_jobs(jobs, tmp_path / "res", device="cpu", progress=False).finished == [jobs[0].job_id]
    weights = ckpt / "model.safetensors"
    before = weights.stat()
    assert (other / "model.safetensors").stat().st_size == before.st_size
    weights.write_bytes((other / "model.safetensors").read_bytes())  # same process, same path, size and mtime
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    # (its provenance too, whose weight fingerprint the load-time checks compare)
    (ckpt / "probekit.json").write_bytes((other / "probekit.json").read_bytes())
    summary = run_jobs(jobs, tmp_path / "res", device="cpu", progress=False)
    assert summary.finished == [jobs[0].job_id] and summary.already_done == 0, summary.failed
    assert [r["changed"] for r in summary.replaced] == [["checkpoint/model.safetensors", "checkpoint/probekit.json"]]
    frame = ResultsStore(tmp_path / "res").read()
    assert frame["checkpoint_sha256"].tolist() == [_sha(other / "model.safetensors")]


def test_rows_stored_before_inputs_were_fingerprinted_are_kept_only_if_they_fit(tmp_path):
    ckpt = _save(tmp_path / "ckpt", seed=1)
    (job,) = jobs = expand(load_sweep(_sweep(tmp_path, ckpt)))
    store = ResultsStore(tmp_path / "res")
    run_jobs(jobs, store.root, device="cpu", progress=False)
    rows = store.job_rows(job.job_id).drop(columns=["inputs_sha256", "replaces"]).to_dict("records")
    store.write_job(job.job_id, rows)  # as an older probekit stored them: no inputs recorded
    assert store.stored_inputs(job.job_id) == {}
    summary = run_jobs(jobs, store.root, device="cpu", progress=False)
    assert summary.already_done == 1 and not summary.finished and not summary.replaced
    assert store.stored_inputs(job.job_id)["digest"] == store.read()["inputs_sha256"].item()  # adopted
    store.write_job(job.job_id, [{**rows[0], "checkpoint_sha256": "0" * 64}])  # rows of other weights
    summary = run_jobs(jobs, store.root, device="cpu", progress=False)
    assert summary.finished == [job.job_id]
    assert [(r["old_inputs_sha256"], r["changed"]) for r in summary.replaced] == [
        (None, ["checkpoint/model.safetensors"])
    ]
    assert store.read()["checkpoint_sha256"].item() == _sha(ckpt / "model.safetensors")


def test_rows_of_jobs_left_out_by_only_are_set_aside_when_their_checkpoint_changed(tmp_path, capsys):
    ckpt = _save(tmp_path / "ckpt", seed=1)
    probe = {"tasks": ["nece"], "ranks": [0], "models": ["pretrained"], "n_train": 6, "n_test": 4, "steps": 3}
    path = _sweep(tmp_path, ckpt, probe={**probe, "batch_size": 16, "op": 2})
    acc, pro = expand(load_sweep(path))
    _run(capsys, "run", str(path), "--json", "--quiet")
    _save(ckpt, seed=2)
    summary, err = _run(capsys, "run", str(path), "--only", "accuracy", "--json", "--quiet")
    assert summary["finished"] == 1
    assert {r["job_id"]: r["rerun"] for r in summary["replaced"]} == {acc.job_id: True, pro.job_id: False}
    assert f"replaced {pro.job_id}: " in err and "not run (not selected)" in err
    store = ResultsStore(tmp_path / "res")
    assert store.read()["job_id"].tolist() == [acc.job_id]  # the probe rows of the old weights are not merged
    (missing,) = store.missing_jobs()
    assert missing["job_id"] == pro.job_id and "earlier inputs were set aside" in missing["reason"]
    summary, _ = _run(capsys, "run", str(path), "--json", "--quiet")
    assert summary["already_done"] == 1 and summary["finished"] == 1 and summary["replaced"] == []
    assert sorted(store.read()["job_id"]) == sorted([acc.job_id, pro.job_id])


@pytest.mark.slow
def test_a_fine_tuning_run_whose_start_checkpoint_changed_trains_afresh_and_its_jobs_rerun(tmp_path, capsys):
    base = _save(tmp_path / "base", seed=1)
    short = ["schedule.steps=2", "schedule.warmup_steps=1", "run.checkpoint_every=2", "run.log_every=1"]
    train = {"ft": {"config": str(REPO / "experiments/train/cpu-tiny.yaml"), "overrides": short}}
    train["ft"]["grid"] = {"model.init_from": [str(base)]}
    path = _sweep(tmp_path, None, checkpoints=None, train=train)
    trained, acc = expand(load_sweep(path))
    assert acc.depends_on == trained.job_id
    listing, _ = _run(capsys, "run", str(path), "--dry-run", "--json")  # no checkpoint of the run yet
    assert [(i["done"], i["inputs_changed"]) for i in listing] == [(False, False)] * 2
    store = ResultsStore(tmp_path / "res")
    first, _ = _run(capsys, "run", str(path), "--json", "--quiet")
    assert first["finished"] == 2 and not first["failed"], first
    old = store.read().set_index("kind")

    _save(base, seed=2)  # the checkpoint it fine-tunes was retrained
    second, _ = _run(capsys, "run", str(path), "--json", "--quiet")
    assert second["finished"] == 2 and second["already_done"] == 0 and not second["failed"], second
    assert [r["job_id"] for r in second["replaced"]] == [trained.job_id, acc.job_id]
    assert "init_from/model.safetensors" in second["replaced"][0]["changed"]
    new = store.read().set_index("kind")
    assert len(new) == 2
    # trained again from the new start (not resumed from the old run), and evaluated on that checkpoint
    assert new.loc["train", "checkpoint_sha256"] != old.loc["train", "checkpoint_sha256"]
    assert new.loc["accuracy", "checkpoint_sha256"] == new.loc["train", "checkpoint_sha256"]
    assert [p["step"] for p in json.loads(new.loc["train", "curve"]) if p.get("event") != "eval"] == [1, 2]
    third, _ = _run(capsys, "run", str(path), "--json", "--quiet")
    assert third["already_done"] == 2 and third["replaced"] == []
