"""Explanation and report speed.

1. Contribution throughput: fraudlab's explanations (XGBoost ``pred_contribs``) against
   shap's ``TreeExplainer`` on the same 200-tree, depth-6 model and the same rows, in the
   same run. Target: at least as fast (ratio >= 1).
2. The reviewer report for about 100,000 scored transactions (scoring, metrics with
   bootstrap intervals, tiers, breakdowns, exact contributions for the flagged cases and
   the stratified sample, every plot, HTML). Target: 60 s or less; printed against the
   machine reference of _common.py.

    python benchmarks/bench_explain.py [--accounts 3300] [--rows 5000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).parent))
import pandas as pd
from _common import reference_seconds

from fraudlab.datasets import SimulationConfig, simulate_world
from fraudlab.evaluation import EvaluationConfig, contributions, evaluate, render_report
from fraudlab.features import build_dataset
from fraudlab.training import TrainingConfig, build_protocol, fit_final


def best_of(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=3300)
    parser.add_argument("--rows", type=int, default=5000, help="rows explained in part 1")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    world = simulate_world(SimulationConfig(accounts=args.accounts, days=85, seed=11, history_days=0))
    ds = build_dataset(world.tables(), pd.Timestamp("2026-05-15", tz="UTC"))
    cfg = TrainingConfig(n_splits=1, validation_window="14d", gap="7d")
    params = {"max_depth": 6, "learning_rate": 0.1, "min_child_weight": 1.0, "subsample": 0.8,
              "colsample_bytree": 0.8, "reg_lambda": 1.0, "reg_alpha": 0.0, "gamma": 0.0,
              "max_delta_step": 0.0, "max_bin": 256, "rebalancing": "scale_pos_weight",
              "n_rounds": 200}
    protocol = build_protocol(ds, cfg)
    model = fit_final(protocol, params, cfg, EvaluationConfig())
    print(f"model: {model.booster.num_boosted_rounds()} trees of depth 6 on "
          f"{len(protocol.spec['features'])} features")

    import shap

    X = protocol.refit.X[: args.rows]
    explainer = shap.TreeExplainer(model.booster)
    t_shap = best_of(lambda: explainer.shap_values(X))
    t_ours = best_of(lambda: contributions(model.booster, X, protocol.spec["features"]))
    print(f"[1] {len(X):,} rows: shap TreeExplainer {len(X) / t_shap:,.0f} rows/s, "
          f"fraudlab contributions {len(X) / t_ours:,.0f} rows/s; "
          f"ratio {t_shap / t_ours:.2f} (target >= 1)")

    scorer = model.scorer()
    ref = reference_seconds()
    t0 = time.perf_counter()
    ev = evaluate(ds, scorer, scorer.spec["tiers"], summary={"benchmark": "bench_explain"})
    html = render_report(ev)
    t_report = time.perf_counter() - t0
    print(f"[2] report for {ev.window['rows']:,} scored transactions: {t_report:.1f} s "
          f"({t_report / ref:.0f}x the machine reference of {ref:.2f} s; target 60 s); "
          f"{len(ev.cases)} cases explained, {len(html) / 1e6:.1f} MB of HTML; "
          f"steps (cumulative s): {ev.timings}")


if __name__ == "__main__":
    main()
