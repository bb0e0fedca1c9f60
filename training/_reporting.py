"""The reviewer report of a registered model: load at the edge, evaluate, render, log."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ._config import FraudlabConfig


def write_model_report(config: FraudlabConfig, model_ref: str, dataset: pd.DataFrame,
                       out: Path, *, start=None, end=None, compare: str | None = "champion",
                       log: bool = True, sections: dict | None = None,
                       include_known_fraud_accounts: bool = False):
    """Evaluate a registered model on a labelled dataset and write the HTML report.

    Parameters
    ----------
    model_ref : str
        ``NAME@ALIAS`` or ``NAME/VERSION``.
    start : timestamp, optional
        First transaction time evaluated; default the model's test-window start when the
        dataset reaches it (so the report never scores rows the model learned from), else
        the whole dataset with a warning in the report.
    compare : str, optional
        Alias of the model to compare with (skipped when it is the same version).
    log : bool
        Also log the report to the model's MLflow run.
    include_known_fraud_accounts : bool
        Also score the accounts with a fraud reported before the window, which the
        model's test window leaves out (then the figures differ from the run's).

    Returns
    -------
    Evaluation
    """
    import mlflow

    from fraudlab.evaluation import evaluate, render_report

    from ._registry import load_registered, model_summary

    scorer, mv, run = load_registered(config, model_ref)
    champion = None
    if compare:
        try:
            ch, ch_mv, _ = load_registered(config, f"{mv.name}@{compare}")
            champion = ch if str(ch_mv.version) != str(mv.version) else None
        except mlflow.exceptions.MlflowException:
            champion = None
    notes = []
    test_start = run.data.tags.get("fraudlab.test_start")
    if start is None and test_start:
        ts0 = pd.Timestamp(test_start)
        if dataset["ts"].max() >= ts0 + pd.Timedelta("1D"):
            start = ts0
        else:
            notes.append("This dataset ends before the model's test window: the figures "
                         "include transactions the model was trained or calibrated on and "
                         "are optimistic.")
    thresholds = dict(scorer.spec.get("tiers", {"block": float("inf"), "review": float("inf")}))
    ev = evaluate(dataset, scorer, thresholds, config=config.evaluation, champion=champion,
                  summary=model_summary(config, mv, run), start=start, end=end,
                  title=f"Fraud model report: {mv.name} version {mv.version}",
                  exclude_known_fraud_accounts=not include_known_fraud_accounts)
    ev.notes = notes + ev.notes
    ev.sections.update(sections or {})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(ev), encoding="utf-8")
    if log:
        with mlflow.start_run(run_id=run.info.run_id):
            mlflow.log_artifact(str(out), "reports")
    return ev
