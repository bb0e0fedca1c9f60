"""Every notebook runs top to bottom on a small world; none is committed with outputs."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))
SMALL = {"accounts": 300, "days": 40, "seed": 3}
# Training needs enough frauds per window: a 3,000-account world, short windows, few trials.
TRAIN_WORLD = {"accounts": 3000, "days": 85, "seed": 11}
FAST_CONFIG = """
features: {label_maturity: 7d}
training: {n_trials: 2, n_splits: 2, validation_window: 7d, gap: 3d, calibration_window: 14d,
           test_window: 7d, max_rounds: 40, early_stopping_rounds: 10, report_every: 10}
"""
EXTRA = {
    "02_features.ipynb": {"as_of": "2026-03-15"},
    "03_train.ipynb": {**TRAIN_WORLD, "as_of": "2026-04-15", "training_overrides": {}},
    "04_explain_decide.ipynb": {**TRAIN_WORLD, "as_of": "2026-04-15", "training_overrides": {}},
    "05_refresh.ipynb": {**TRAIN_WORLD, "training_overrides": {},
                         "periods": ["2026-03-20", "2026-03-27"],
                         "backtest_from": "2026-03-06", "backtest_to": "2026-03-27"},
}


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["01_explore.ipynb", "02_features.ipynb", "03_train.ipynb",
                                           "04_explain_decide.ipynb", "05_refresh.ipynb"]


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
    if path.name >= "03":
        config = tmp_path / "fraudlab.yaml"
        config.write_text(FAST_CONFIG)
        params.update(project_root=str(tmp_path), config_file=str(config))
    pm.execute_notebook(str(path), str(tmp_path / path.name), parameters=params,
                        cwd=str(path.parent), kernel_name="python3", progress_bar=False,
                        log_output=False)
    out = json.loads((tmp_path / path.name).read_text())
    errors = [o for c in out["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    # A notebook that draws shows its plots: nothing in the library switches the backend.
    drawn = "plt.show()" in path.read_text()
    images = [o for c in out["cells"] for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images or not drawn, f"{path.name} calls plt.show() but shows no image"
