"""Imports run downward only: training -> evaluation -> features -> data_contracts, with
datasets (the simulated world, the handbook's data) beside evaluation, over features, and
serving beside training (training's CLI and refresh cycle compose it)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# What each stage may import from fraudlab (besides itself and the root package).
ALLOWED = {
    "data_contracts": set(),
    "features": {"data_contracts"},
    "datasets": {"features", "data_contracts"},
    "evaluation": {"features", "data_contracts"},
    "serving": {"evaluation", "features", "data_contracts"},
    "training": {"serving", "evaluation", "datasets", "features", "data_contracts"},
}
# The old fraudlab.features names of the datasets, resolved on first use (until 0.3).
EXCEPTIONS = {("features/__init__.py", "datasets")}


def _fraudlab_imports(path: Path) -> set[str]:
    stages = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                 else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "fraudlab" and len(parts) > 1 and not parts[1].startswith("_"):
                stages.add(parts[1])
    return stages


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_a_stage_imports_only_the_stages_below_it(stage):
    for path in sorted((ROOT / stage).glob("*.py")):
        rel = str(path.relative_to(ROOT))
        wrong = {s for s in _fraudlab_imports(path) - ALLOWED[stage] - {stage}
                 if (rel, s) not in EXCEPTIONS}
        assert not wrong, f"{rel} imports {sorted(wrong)}"
