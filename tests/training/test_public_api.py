"""The training stage's public names: each one imports, and the names IDEs read (the
TYPE_CHECKING imports) are exactly those exported at run time."""

import ast
from pathlib import Path

import fraudlab.training as training


def test_every_exported_name_imports():
    for name in training.__all__:
        assert getattr(training, name) is not None, name


def test_the_names_for_type_checkers_are_the_exports():
    tree = ast.parse(Path(training.__file__).read_text())
    [block] = [n for n in tree.body if isinstance(n, ast.If)
               and getattr(n.test, "id", None) == "TYPE_CHECKING"]
    declared = {(f".{imp.module}", a.name) for imp in block.body for a in imp.names}
    assert declared == {(mod, name) for name, mod in training._EXPORTS.items()}
    assert sorted(training.__all__) == sorted(training._EXPORTS)
