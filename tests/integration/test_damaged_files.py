"""Damaged files (issue 16): a truncated ``model.safetensors``, ``config.json``, ``generation_config.json``,
``tokenizer.json``, ``trainer_state.pt`` or data shard ends every command that loads it in one line on stderr
that names the file and says what is wrong; ``train --resume`` skips a damaged newest checkpoint (saying so)
and continues from the newest intact one; a ``latest`` pointer file and a run folder stand for their checkpoint.

Every case truncates the files of a real tiny checkpoint (a gpt2-tiny trained for 4 steps, checkpoints at steps 2
and 4) or of real shards (``probekit generate --tokens``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tinyrun import TINY_RUN

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from probekit.checkpoint import (  # noqa: E402
    LATEST,
    STATE_FILE,
    CheckpointError,
    load_checkpoint,
    load_model,
    read_provenance,
    resolve_checkpoint,
)
from probekit.cli import main  # noqa: E402
from probekit.train import loop  # noqa: E402
from probekit.train.checkpointing import TrainerState  # noqa: E402
from probekit.train.config import load_config  # noqa: E402

TINY = [*TINY_RUN, "schedule.steps=4", "schedule.warmup_steps=1", "run.checkpoint_every=2"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished tiny run: ``OUT/checkpoints/step_000002``, ``step_000004`` and ``latest`` (naming step 4)."""
    out = tmp_path_factory.mktemp("run") / "out"
    loop.train(load_config(None, [*TINY, f"run.out={out}"]))
    assert (out / "checkpoints" / LATEST).read_text().strip() == "step_000004"
    return out


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text("model:\n  name: gpt2-tiny\n")
    return path


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(run_dir, out)
    return out


def truncate(path: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def run(argv, capsys) -> tuple[int, list[str]]:
    """``probekit ARGV`` in this process: exit status and the lines on stderr."""
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err.strip().splitlines()


def assert_one_line_naming(err: list[str], path: Path, what: str) -> None:
    assert len(err) == 1, err
    assert str(path) in err[0] and what in err[0], err[0]
    assert "Traceback" not in err[0]


# ---------------------------------------------------------------------------------------------- loading commands
COMMANDS = {
    "eval": ["--sets", "2", "--n", "1", "--workers", "1", "--quiet"],
    "probe": ["--steps", "2", "--n-train", "2", "--n-test", "2", "--op", "2", "--device", "cpu", "--quiet"],
    "inspect": ["--fast"],
}
CHECKPOINT_COMMANDS = {
    **COMMANDS,
    "patch": ["--op", "3", "--n", "1", "--no-generate", "--quiet"],
    "intervene": ["--task", "nece", "--layer", "1", "--quiet"],
}


@pytest.mark.parametrize("missing", ["nothing", "folder"])
@pytest.mark.parametrize("command", list(CHECKPOINT_COMMANDS))
def test_a_path_naming_no_checkpoint_exits_2_like_a_bad_option(tmp_path, capsys, command, missing):
    path = tmp_path / "ckpt"
    if missing == "folder":
        path.mkdir()
    rc, err = run([command, path, *CHECKPOINT_COMMANDS[command]], capsys)
    assert rc == 2
    what = "no such file or folder" if missing == "nothing" else "is not a checkpoint folder (no config.json)"
    assert_one_line_naming(err, path, what)
    assert err[0].startswith(f"probekit {command}: error: ")


DAMAGE = {
    "model.safetensors": "truncated or corrupt safetensors file",
    "tokenizer.json": "truncated or corrupt JSON file",
    "config.json": "truncated or corrupt JSON file",
    "generation_config.json": "truncated or corrupt JSON file",
}


@pytest.mark.parametrize("name", list(DAMAGE))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_damaged_checkpoint_file_is_one_line_naming_it(run_dir, tmp_path, capsys, command, name):
    folder = copy_run(run_dir, tmp_path) / "checkpoints" / "step_000004"
    damaged = truncate(folder / name)
    rc, err = run([command, folder, *COMMANDS[command]], capsys)
    assert rc == 1
    assert_one_line_naming(err, damaged, DAMAGE[name])
    assert err[0].startswith(f"probekit {command}: error: ")


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.5, 0.999])
def test_every_cut_of_the_weights_is_recognised(run_dir, tmp_path, fraction):
    folder = copy_run(run_dir, tmp_path) / "checkpoints" / "step_000002"
    damaged = truncate(folder / "model.safetensors", fraction)
    with pytest.raises(CheckpointError, match="truncated or corrupt safetensors file") as info:
        load_checkpoint(folder)
    assert str(damaged) in str(info.value)


def test_a_tokenizer_cut_in_half_is_named_by_the_tokenizer_loader(run_dir, tmp_path):
    from probekit.tokenizer import IGSMTokenizer, TokenizerFileError

    folder = copy_run(run_dir, tmp_path) / "checkpoints" / "step_000004"
    damaged = truncate(folder / "tokenizer.json")
    with pytest.raises(TokenizerFileError, match="truncated or corrupt tokenizer file") as info:
        IGSMTokenizer.load(folder)
    assert str(damaged) in str(info.value)


def test_a_damaged_init_from_folder_is_a_config_error_naming_the_file(run_dir, tmp_path, capsys, config):
    folder = copy_run(run_dir, tmp_path) / "checkpoints" / "step_000004"
    damaged = truncate(folder / "model.safetensors")
    rc, err = run(
        ["train", config, *TINY, f"run.out={tmp_path / 'ft'}", f"model.init_from={folder}", "--quiet"], capsys
    )
    assert rc == 2
    assert_one_line_naming(err, damaged, "truncated or corrupt safetensors file")
    # a tokenizer cut in half is not mistaken for a foreign folder (which would train with the default tokenizer)
    shutil.copy(run_dir / "checkpoints" / "step_000004" / "model.safetensors", folder / "model.safetensors")
    damaged = truncate(folder / "tokenizer.json")
    rc, err = run(["train", config, *TINY, f"run.out={tmp_path / 'ft'}", f"--init-from={folder}", "--quiet"], capsys)
    assert rc == 2
    assert_one_line_naming(err, damaged, "truncated or corrupt JSON file")
    assert not (tmp_path / "ft" / "checkpoints").exists()


# ---------------------------------------------------------------------------------------------- trainer state, --resume
def test_a_truncated_trainer_state_is_named(run_dir, tmp_path):
    state = truncate(copy_run(run_dir, tmp_path) / "checkpoints" / "step_000004" / STATE_FILE)
    with pytest.raises(CheckpointError, match="truncated or corrupt trainer state") as info:
        TrainerState.load(state)
    assert str(state) in str(info.value)


def test_resume_from_a_damaged_checkpoint_is_one_line_naming_the_file(run_dir, tmp_path, capsys, config):
    folder = copy_run(run_dir, tmp_path) / "checkpoints" / "step_000002"
    state = truncate(folder / STATE_FILE)
    rc, err = run(["train", config, *TINY, f"run.out={tmp_path / 'new'}", "--resume-from", folder, "--quiet"], capsys)
    assert rc == 2
    assert_one_line_naming(err, state, "truncated or corrupt trainer state")


@pytest.mark.parametrize("name", [STATE_FILE, "model.safetensors", "tokenizer.json"])
def test_resume_skips_a_damaged_latest_checkpoint(run_dir, tmp_path, capsys, config, name):
    """The newest checkpoint (the one ``latest`` names) is damaged: the run says which one it skips and why,
    continues from step 2, and ends as an uninterrupted run would (steps 3 and 4 logged again)."""
    out = copy_run(run_dir, tmp_path)
    damaged = truncate(out / "checkpoints" / "step_000004" / name)
    rc, err = run(["train", config, *TINY, f"run.out={out}", "--resume", "--quiet"], capsys)
    assert rc == 0, err
    skipped = [line for line in err if "skipping the damaged checkpoint" in line]
    assert len(skipped) == 1 and str(out / "checkpoints" / "step_000004") in skipped[0] and str(damaged) in skipped[0]
    assert any(f"resuming from {out / 'checkpoints' / 'step_000002'}" in line for line in err), err
    # the resumed run trained steps 3 and 4 again and rewrote the damaged checkpoint
    assert (out / "checkpoints" / LATEST).read_text().strip() == "step_000004"
    assert TrainerState.load(out / "checkpoints" / "step_000004" / STATE_FILE).step == 4
    load_model(out / "checkpoints" / "step_000004")


def test_resume_when_every_checkpoint_is_damaged_is_a_config_error(run_dir, tmp_path, capsys, config):
    out = copy_run(run_dir, tmp_path)
    for step in ("step_000002", "step_000004"):
        truncate(out / "checkpoints" / step / "model.safetensors")
    rc, err = run(["train", config, *TINY, f"run.out={out}", "--resume", "--quiet"], capsys)
    assert rc == 2
    assert "every checkpoint in" in err[-1] and "step_000002" in err[-1] and "step_000004" in err[-1]


# ---------------------------------------------------------------------------------------------- latest pointer, run folder
def test_latest_pointer_and_run_folder_stand_for_the_checkpoint(run_dir, tmp_path, capsys):
    step4 = run_dir / "checkpoints" / "step_000004"
    for spelling in (run_dir / "checkpoints" / LATEST, run_dir / "checkpoints", run_dir, step4):
        assert resolve_checkpoint(spelling) == step4
        assert read_provenance(spelling)["step"] == 4
    loaded = load_checkpoint(run_dir / "checkpoints" / LATEST)
    assert loaded.path == step4 and loaded.provenance["step"] == 4
    capsys.readouterr()
    rc, err = run(["inspect", run_dir / "checkpoints" / LATEST, "--fast"], capsys)
    assert rc == 0 and err[-1].endswith("all checks pass"), err
    assert err[0] == f"probekit: {run_dir / 'checkpoints' / LATEST} is the checkpoint {step4}"
    # the README's `probekit eval runs/med/checkpoints/latest`: the rows name the folder it stands for
    assert main(["eval", str(run_dir / "checkpoints" / LATEST), "--sets", "2", "--n", "1", "--quiet", "--json"]) == 0
    assert [row["checkpoint"] for row in json.loads(capsys.readouterr().out)] == [str(step4)]


def test_a_bad_pointer_or_an_empty_run_folder_is_named(run_dir, tmp_path, capsys):
    out = copy_run(run_dir, tmp_path)
    pointer = out / "checkpoints" / LATEST
    pointer.write_text("step_000009\n")
    with pytest.raises(CheckpointError, match="names step_000009, which is not a checkpoint folder"):
        load_checkpoint(pointer)
    assert resolve_checkpoint(out) == out / "checkpoints" / "step_000004"  # a run folder: the newest complete
    weights = out / "checkpoints" / "step_000004" / "model.safetensors"
    rc, err = run(["inspect", weights, "--fast"], capsys)
    assert rc == 1
    assert_one_line_naming(err, weights, "is a file, not a checkpoint folder")
    empty = tmp_path / "empty"
    (empty / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="a run folder without a complete checkpoint"):
        load_checkpoint(empty)


# ---------------------------------------------------------------------------------------------- data shards
@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shards")
    argv = ["generate", "--n", "40", "--op", "2", "--seed", "1", "--out", folder / "problems.jsonl", "--quiet"]
    assert main([*map(str, argv), "--tokens", str(folder / "tokens"), "--context", "256"]) == 0
    return folder / "tokens"


@pytest.mark.parametrize(
    "name, what",
    [("shard_00000.npy", "truncated or corrupt shard file"), ("meta.json", "truncated or corrupt shard metadata")],
)
@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.5])
def test_a_damaged_shard_is_one_line_naming_it(shards, tmp_path, capsys, config, name, what, fraction):
    from probekit.shards import ShardError, read_shards

    copy = tmp_path / "tokens"
    shutil.copytree(shards, copy)
    damaged = truncate(copy / name, fraction)
    with pytest.raises(ShardError, match=what) as info:
        read_shards(copy)
    assert str(damaged) in str(info.value)
    source = ["data.source=shards", f"data.shards={copy}", "data.context=null"]
    rc, err = run(["train", config, *TINY, *source, f"run.out={tmp_path / 'run'}", "--quiet"], capsys)
    assert rc == 2
    assert_one_line_naming(err, damaged, what)
    assert err[0].startswith("probekit train: config error: data.shards: ")
