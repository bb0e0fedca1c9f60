"""The Optuna search: seeded reproducibility, sparse pruning reports, shared studies."""

from __future__ import annotations

import uuid

import pytest

from fraudlab.training import build_protocol


def _run(config, protocol, name):
    from fraudlab.training._study import run_study

    return run_study(protocol, config, name)


def test_a_seeded_study_reproduces_its_trials(labeled_dataset, fast_config):
    protocol = build_protocol(labeled_dataset, fast_config.training)
    a = _run(fast_config, protocol, "a")
    b = _run(fast_config, protocol, "b")
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.value for t in a.trials] == [t.value for t in b.trials]
    assert len({t.params["max_depth"] for t in a.trials} | {str(t.params) for t in a.trials}) > 1
    first = a.trials[0]
    assert len(first.user_attrs["fold_scores"]) == 2
    # Intermediate values only every report_every (10) rounds, not every round.
    steps = sorted(first.intermediate_values)
    assert steps and all(s % 10 == 0 for s in steps)


@pytest.mark.postgres
@pytest.mark.slow
def test_two_workers_share_one_postgresql_study(labeled_dataset, fast_config, tmp_path,
                                                postgres_url):
    import optuna

    url = postgres_url
    path = tmp_path / "dataset.parquet"
    labeled_dataset.to_parquet(path)
    config = fast_config.model_copy(update={"training": fast_config.training.model_copy(
        update={"workers": 2, "n_trials": 4, "storage": url})})
    name = f"test-two-workers-{uuid.uuid4().hex[:8]}"
    from fraudlab.training._study import run_study

    try:
        run_study(build_protocol(labeled_dataset, config.training), config, name, dataset_path=path)
        study = optuna.load_study(study_name=name, storage=url)
        trials = study.get_trials()
        assert len(trials) == 4
        assert sorted(t.number for t in trials) == [0, 1, 2, 3]
        assert all(t.state.is_finished() for t in trials)
        assert len({t.user_attrs["worker_pid"] for t in trials}) == 2  # both workers ran trials
    finally:
        optuna.delete_study(study_name=name, storage=url)


def test_workers_need_a_shared_storage(labeled_dataset, fast_config):
    config = fast_config.model_copy(update={"training": fast_config.training.model_copy(
        update={"workers": 2})})
    with pytest.raises(ValueError, match="shared storage"):
        _run(config, build_protocol(labeled_dataset, config.training), "x")
