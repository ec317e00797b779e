"""The example notebooks in examples/: committed without outputs, and each runs top to bottom on a CPU.

The executing tests are marked ``notebooks`` (deselect with ``-m "not notebooks"``); each notebook runs once in a
fresh ``python3`` kernel with ``OMP_NUM_THREADS=1`` and the Hugging Face hub offline (a notebook must not
download anything), and its tagged cells' outputs are checked for real results.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from probekit.igsm.check import MISTAKE_KINDS

nbformat = pytest.importorskip("nbformat")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOTEBOOKS = (
    "01-quickstart.ipynb",
    "02-probing.ipynb",
    "03-mistakes.ipynb",
    "04-data-scaling.ipynb",
    "05-causal.ipynb",
)
RUNTIMES: dict[str, float] = {}


# ---------------------------------------------------------------------------------------------- as committed
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name):
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "CPU" in first.source
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: a code cell has outputs"


# ---------------------------------------------------------------------------------------------- executed
@pytest.fixture(scope="module")
def executed():
    """``run(name)``: the notebook executed (once per module), with its wall time in ``RUNTIMES``."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    from nbclient import NotebookClient

    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    cache: dict[str, object] = {}

    def run(name):
        if name not in cache:
            nb = nbformat.read(EXAMPLES / name, as_version=4)
            client = NotebookClient(
                nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
            )
            start = time.perf_counter()
            client.execute(env=env)  # raises CellExecutionError on the first failing cell
            RUNTIMES[name] = time.perf_counter() - start
            print(f"\n{name}: {RUNTIMES[name]:.1f} s")
            cache[name] = nb
        return cache[name]

    return run


def _cell(nb, tag):
    cells = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}"
    return cells[0]


def _stdout(cell) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def _has_image(cell) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell.outputs)


def _no_errors(nb):
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not [o for o in cell.outputs if o.output_type == "error"]


@pytest.mark.notebooks
def test_quickstart(executed):
    nb = executed("01-quickstart.ipynb")
    _no_errors(nb)
    graphs = _cell(nb, "graphs")
    assert _has_image(graphs)
    assert re.search(r"\d+ parameters drawn, \d+ necessary", _stdout(graphs))
    check = _stdout(_cell(nb, "check"))
    assert "reference correct=True" in check
    assert "corrupted correct=False" in check
    kinds = re.search(r"mistake kinds: (.+)", check).group(1).split(", ")
    assert kinds and set(kinds) <= set(MISTAKE_KINDS)
    assert "arithmetic_error" in kinds  # the corruption is one wrong result
    assert re.search(r"first_error=\"[^\"]+\"|first_error='[^']+'", check)
    assert re.search(r"\d+ parameters, \d+ necessary, \d+ dependency pairs", _stdout(_cell(nb, "labels")))
    batch = _cell(nb, "batch")
    assert _has_image(batch) and "200 records" in _stdout(batch)


@pytest.mark.notebooks
def test_probing(executed):
    nb = executed("02-probing.ipynb")
    _no_errors(nb)
    scores = re.findall(
        r"^(pretrained|random-init): accuracy ([0-9.]+) \(majority ([0-9.]+), n = (\d+)\)",
        _stdout(_cell(nb, "vprobe")),
        flags=re.MULTILINE,
    )
    assert [s[0] for s in scores] == ["pretrained", "random-init"]
    for _, accuracy, majority, n in scores:
        assert 0.0 <= float(accuracy) <= 1.0 and 0.0 <= float(majority) <= 1.0 and int(n) > 0
    layers = _cell(nb, "layers")
    assert _has_image(layers)
    rows = re.findall(
        r"^\s*(pretrained|random-init)\s+(\d+)\s+blocks\.\d+\.hook_resid_post\s+([0-9.]+)",
        _stdout(layers),
        flags=re.MULTILINE,
    )
    assert len(rows) == 16  # 8 blocks x 2 models
    assert all(0.0 <= float(acc) <= 1.0 for *_, acc in rows)


@pytest.mark.notebooks
def test_mistakes(executed):
    nb = executed("03-mistakes.ipynb")
    _no_errors(nb)
    m = re.search(r"set op=5: (\d+)/(\d+) correct, accuracy ([0-9.]+)", _stdout(_cell(nb, "eval")))
    assert m and int(m.group(2)) == 16 and int(m.group(1)) <= 16 and 0.0 <= float(m.group(3)) <= 1.0
    kinds = _cell(nb, "kinds")
    assert _has_image(kinds)
    listed = {line.split()[0] for line in _stdout(kinds).splitlines()[1:] if line.strip()}
    assert listed and listed <= set(MISTAKE_KINDS)
    out = _stdout(_cell(nb, "analysis"))
    assert re.search(r"solutions: 16 \(\d+ correct, \d+ wrong\)", out)
    assert "(a) nece probe" in out and "(b) can_next / nece_next" in out
    assert "unwritten_unnecessary" in out and "background" in out


@pytest.mark.notebooks
def test_data_scaling(executed):
    nb = executed("04-data-scaling.ipynb")
    _no_errors(nb)
    out = _stdout(_cell(nb, "results"))
    assert "4 accuracy rows from 2 checkpoints" in out  # 2 data sizes x 2 sets
    assert "tiny-n_problems-50" in out and "tiny-n_problems-none" in out
    figures = _cell(nb, "figures")
    written = re.findall(r"^(\w+) written$", _stdout(figures), flags=re.MULTILINE)
    assert {"scaling_accuracy", "scaling_errors", "step_fit"} <= set(written) and _has_image(figures)


@pytest.mark.notebooks
def test_causal(executed):
    nb = executed("05-causal.ipynb")
    _no_errors(nb)
    pair = _stdout(_cell(nb, "pair"))
    m = re.search(r"answer (\d+) -> (\d+); same length: True", pair)
    assert m and m.group(1) != m.group(2)
    table = _stdout(_cell(nb, "patch")).splitlines()
    assert table[0].split()[1:] == ["all", "changed", "other_statements", "question", "solution"]
    embed = table[1].split()
    assert embed[0] == "embed" and float(embed[1]) == pytest.approx(1.0, abs=0.01)  # every position: clean run
    assert float(embed[2]) == pytest.approx(1.0, abs=0.01)  # the changed statement carries the change at the input
    decoded = re.findall(r"clean answer restored: (True|False)", _stdout(_cell(nb, "decode")))
    assert len(decoded) == 2
    heatmap = _cell(nb, "heatmap")
    assert _has_image(heatmap)
    assert (
        len(
            re.findall(
                r"^\s*(embed\.hook_out|blocks\.\d\.hook_resid_post|ln_final\.hook_out)\s", _stdout(heatmap), re.M
            )
        )
        == 10
    )
    out = _stdout(_cell(nb, "intervene"))
    assert len(re.findall(r"^\s+random\s", out, flags=re.MULTILINE)) == 10
    for metric in ("probe_accuracy", "accuracy", "unnecessary_per_solution", "first_error_position"):
        assert re.search(rf"^{metric}\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+ \[[0-9.]+, [0-9.]+\]\s+\d+/11", out, re.M), metric
