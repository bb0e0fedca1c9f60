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
