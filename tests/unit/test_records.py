"""Output paths are checked against the inputs by real path (probekit.records.check_outputs)."""

from __future__ import annotations

import pytest

from probekit.records import OutputOverInput, check_outputs


def test_outputs_may_not_be_an_input_or_each_other(tmp_path):
    data = tmp_path / "a.jsonl"
    data.write_text("{}\n")
    (tmp_path / "link").symlink_to(data)
    with pytest.raises(OutputOverInput, match="--out"):
        check_outputs({"--out": tmp_path / "link"}, {"--input": data})
    with pytest.raises(OutputOverInput, match="same path as the output --out .*x: writing it would make one output"):
        check_outputs({"--out": tmp_path / "x", "--tokens": tmp_path / "y" / ".." / "x"}, {})


def test_distinct_paths_stdout_and_missing_options_pass(tmp_path):
    check_outputs({"--out": tmp_path / "b.jsonl", "--tokens": None}, {"--input": tmp_path / "a.jsonl"})
    check_outputs({"--out": "-"}, {"--input": "-"})
