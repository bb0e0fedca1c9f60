from pathlib import Path

import pytest
import yaml

from fraudlab.training import FraudlabConfig, config_to_yaml, load_config


def test_defaults_round_trip_through_yaml():
    cfg = load_config()
    again = FraudlabConfig.model_validate(yaml.safe_load(config_to_yaml(cfg)))
    assert again == cfg


def test_relative_root_is_resolved_against_the_config_file(tmp_path):
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "f.yaml"
    path.write_text("paths:\n  root: ..\n")
    cfg = load_config(path)
    assert Path(cfg.paths.root) == tmp_path.resolve()
    assert cfg.path(cfg.paths.raw) == tmp_path.resolve() / "data" / "world"
    assert cfg.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'mlflow.db'}"


def test_env_var_selects_the_file(tmp_path, monkeypatch):
    path = tmp_path / "f.yaml"
    path.write_text("simulation:\n  seed: 99\n")
    monkeypatch.setenv("FRAUDLAB_CONFIG", str(path))
    assert load_config().simulation.seed == 99


def test_bad_duration_is_rejected():
    with pytest.raises(ValueError, match="not a duration"):
        load_config(sources={"default_label_delay": "a fortnight"})


def test_the_label_maturity_follows_a_longer_default_label_delay():
    """Labels dated by the default delay arrive 45 days after the payment: rows are not
    mature before then, and the protocol's gap follows; a shorter explicit maturity is
    refused."""
    from pydantic import ValidationError

    cfg = FraudlabConfig(sources={"default_label_delay": "45d"})
    assert cfg.features.label_maturity == "45d" and cfg.training.gap == "45d"
    assert FraudlabConfig().features.label_maturity == "30d"  # the 14d default delay is shorter
    assert FraudlabConfig(sources={"default_label_delay": "45d"},
                          features={"label_maturity": "60d"}).features.label_maturity == "60d"
    with pytest.raises(ValidationError, match="label_maturity 30d is shorter than "
                                              "sources.default_label_delay 45d"):
        FraudlabConfig(sources={"default_label_delay": "45d"}, features={"label_maturity": "30d"})
