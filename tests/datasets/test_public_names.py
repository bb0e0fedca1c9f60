"""fraudlab.datasets holds the simulator and the handbook's dataset; the old names in
fraudlab.features still work for one release, with a DeprecationWarning."""

import pytest

import fraudlab.datasets as datasets
import fraudlab.features as features


def test_every_exported_name_imports():
    for name in datasets.__all__:
        assert getattr(datasets, name) is not None, name
    assert not set(datasets.__all__) & set(features.__all__)


@pytest.mark.parametrize("name", ["simulate_world", "SimulationConfig", "FRAUD_TYPES",
                                  "SimulatedWorld", "handbook_transactions",
                                  "HANDBOOK_SOURCES"])
def test_the_old_names_warn_and_are_the_same_objects(name):
    with pytest.warns(DeprecationWarning, match=f"fraudlab.datasets.{name}"):
        old = getattr(features, name)
    assert old is getattr(datasets, name)


def test_an_unknown_name_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        features.no_such_name  # noqa: B018
