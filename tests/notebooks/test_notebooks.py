"""Every notebook runs top to bottom on a small world; none is committed with outputs."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))
SMALL = {"accounts": 300, "days": 40, "seed": 3}
EXTRA = {"02_features.ipynb": {"as_of": "2026-03-15"}}


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:2] == ["01_explore.ipynb", "02_features.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, path.name
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb["cells"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path):
    import papermill as pm

    params = {**SMALL, "raw_dir": str(tmp_path / "world"), **EXTRA.get(path.name, {})}
    pm.execute_notebook(str(path), str(tmp_path / path.name), parameters=params,
                        cwd=str(path.parent), kernel_name="python3", progress_bar=False,
                        log_output=False)
    out = json.loads((tmp_path / path.name).read_text())
    errors = [o for c in out["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
