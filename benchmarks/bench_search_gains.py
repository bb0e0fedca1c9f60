"""Where the search's speed comes from, each measured against its own baseline in one run.

1. Quantised matrices built once per fold and ``max_bin`` and reused across trials, against
   rebuilding them every trial (same seeded trials, row-preserving strategies).
2. Sparse pruning reports (every 25 rounds) against reporting every round, on an SQLite
   study (each report is a database write).

    python benchmarks/bench_search_gains.py [--accounts 20000] [--days 131] [--trials 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).parent))
import optuna
from _common import matured_dataset

from fraudlab.training import TrainingConfig, build_protocol
from fraudlab.training._search import Objective


def run(protocol, config: TrainingConfig, *, storage=None, reuse=True) -> tuple[float, list]:
    study = optuna.create_study(direction="maximize", storage=storage,
                                sampler=optuna.samplers.TPESampler(seed=config.seed))
    t = time.perf_counter()
    study.optimize(Objective(protocol, config, reuse_matrices=reuse), n_trials=config.n_trials)
    return time.perf_counter() - t, [tr.value for tr in study.trials]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=131)
    parser.add_argument("--trials", type=int, default=4)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    ds = matured_dataset(args.accounts, args.days)
    cfg = TrainingConfig(n_trials=args.trials, n_splits=1, max_rounds=200,
                         strategies=["none", "scale_pos_weight"])
    protocol = build_protocol(ds, cfg)
    print(f"{len(ds):,} transactions; one fold of {len(protocol.folds[0].train):,} training rows; "
          f"{args.trials} trials each")

    t_rebuild, v_rebuild = run(protocol, cfg, reuse=False)
    t_reuse, v_reuse = run(protocol, cfg, reuse=True)
    same = v_rebuild == v_reuse
    print(f"[1] matrices rebuilt every trial {t_rebuild:.1f} s, reused {t_reuse:.1f} s: "
          f"{t_rebuild / t_reuse:.2f}x ({args.trials / t_reuse * 60:.1f} trials/min); "
          f"identical trial values: {same}")

    with tempfile.TemporaryDirectory() as tmp:
        every = cfg.model_copy(update={"report_every": 1})
        sparse = cfg.model_copy(update={"report_every": 25})
        t_every, _ = run(protocol, every, storage=f"sqlite:///{tmp}/every.db")
        t_sparse, _ = run(protocol, sparse, storage=f"sqlite:///{tmp}/sparse.db")
    print(f"[2] SQLite study, reports every round {t_every:.1f} s, every 25 rounds "
          f"{t_sparse:.1f} s: {t_every / t_sparse:.2f}x")


if __name__ == "__main__":
    main()
