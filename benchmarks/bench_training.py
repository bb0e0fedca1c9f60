"""Training speed: a 30-trial study on about 1M transactions, with refit, calibration and
the baseline (MLflow logging excluded). Target: 15 minutes.

The baseline timed in the same run is one XGBoost fit with its default parameters on the
refit window (QuantileDMatrix, 100 rounds): the study is reported as a multiple of it, and
against the machine reference of _common.py.

    python benchmarks/bench_training.py [--accounts 20000] [--days 131] [--trials 30]
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
from _common import matured_dataset, peak_rss_mb, reference_seconds

from fraudlab.training import build_protocol, load_config, train_model
from fraudlab.training._search import BASELINE_PARAMS, fit_booster


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=131)
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    ds = matured_dataset(args.accounts, args.days)
    config = load_config(None, training={"n_trials": args.trials})
    protocol = build_protocol(ds, config.training)
    print(f"dataset: {len(ds):,} transactions, {int(ds['is_fraud'].sum()):,} frauds; "
          f"folds train rows {[len(f.train) for f in protocol.folds]}, refit {len(protocol.refit):,}")

    ref = reference_seconds()
    t = time.perf_counter()
    fit_booster(BASELINE_PARAMS, protocol.refit, protocol.spec, seed=0, n_rounds=100)
    t_fit = time.perf_counter() - t

    t = time.perf_counter()
    result = train_model(ds, config, log=False)
    t_all = time.perf_counter() - t
    states = pd.Series([tr.state.name for tr in result.study.trials]).value_counts().to_dict()
    print(f"study of {len(result.study.trials)} trials ({states}) + refit + calibration + "
          f"baseline: {t_all:.0f} s = {t_all / 60:.1f} min (target 15 min); "
          f"{t_all / t_fit:.0f}x one default XGBoost fit on the refit window ({t_fit:.1f} s); "
          f"{t_all / ref:.0f}x the machine reference ({ref:.2f} s); peak {peak_rss_mb():,.0f} MB")
    m, b = result.model.test_metrics, result.baseline.test_metrics
    print(f"test AP tuned {m['average_precision_score']:.4f} vs baseline "
          f"{b['average_precision_score']:.4f}; best {result.model.params}")


if __name__ == "__main__":
    main()
