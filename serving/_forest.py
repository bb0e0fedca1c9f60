"""A booster's trees as flat arrays, walked for one row by a compiled loop.

XGBoost's ``inplace_predict`` on one row costs about 150 us here, most of it in its Python
wrapper (argument checks, a JSON configuration per call) rather than in the trees: 26
trees of depth 6 are about 160 comparisons. A payment cannot spend its whole budget
there, so the scorer walks the same trees itself, read from XGBoost's own JSON model
(``Booster.save_raw("json")``, never a pickle), with XGBoost's rules: a split sends a row
left when its float32 value is below the float32 threshold, a missing value goes the
node's default way, and leaf values are added in float32 in tree order onto the base
margin, as XGBoost's CPU predictor does.

A forest that cannot be read this way (another booster than ``gbtree``, categorical
splits, several outputs, an unknown objective) or that does not reproduce XGBoost's
margins on probe rows is refused with :class:`UnsupportedForest`; the scorer then keeps
``inplace_predict``.
"""

from __future__ import annotations

import json
import math

import numpy as np
from numba import njit

# Objectives whose base_score is a probability (the margin starts at its log-odds), and
# those whose base_score is already a margin.
_PROBABILITY_BASE = {"binary:logistic", "reg:logistic"}
_MARGIN_BASE = {"binary:logitraw", "reg:squarederror", "binary:hinge"}


class UnsupportedForest(ValueError):
    """The booster's trees cannot be walked by :class:`Forest` (see the message)."""


@njit(cache=True, nogil=True)
def _margin(x, left, right, feature, threshold, default_left, roots, base):  # pragma: no cover - compiled
    total = base
    for k in range(roots.shape[0]):
        i = roots[k]
        while left[i] != -1:
            v = x[feature[i]]
            if v != v:
                i = left[i] if default_left[i] else right[i]
            elif v < threshold[i]:
                i = left[i]
            else:
                i = right[i]
        total += threshold[i]  # a leaf's value is kept where a split keeps its threshold
    return total


def _cat(parts: list, dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.empty(0, dtype)


class Forest:
    """The trees of a binary XGBoost model, for the margin of one row at a time.

    Parameters
    ----------
    booster : xgboost.Booster
        A ``gbtree`` model with numerical splits and one output.

    Raises
    ------
    UnsupportedForest
        The model is of a kind this walk does not reproduce.
    """

    def __init__(self, booster):
        doc = json.loads(booster.save_raw("json"))["learner"]
        gb = doc["gradient_booster"]
        if gb.get("name") != "gbtree":
            raise UnsupportedForest(f"booster {gb.get('name')!r} (only gbtree is walked)")
        param = doc["learner_model_param"]
        if int(param.get("num_class", 0)) > 1 or int(param.get("num_target", 1)) != 1:
            raise UnsupportedForest("several outputs")
        objective = doc["objective"]["name"]
        base = float(str(param["base_score"]).strip("[]"))
        if objective in _PROBABILITY_BASE:
            base = math.log(base / (1.0 - base))
        elif objective not in _MARGIN_BASE:
            raise UnsupportedForest(f"objective {objective!r}")
        trees = gb["model"]["trees"]
        left, right, feature, threshold, default_left, roots = [], [], [], [], [], []
        offset = 0
        for tree in trees:
            if any(tree["split_type"]):
                raise UnsupportedForest("categorical splits")
            lc = np.asarray(tree["left_children"], np.int32)
            rc = np.asarray(tree["right_children"], np.int32)
            left.append(np.where(lc >= 0, lc + offset, -1))
            right.append(np.where(rc >= 0, rc + offset, -1))
            feature.append(np.asarray(tree["split_indices"], np.int32))
            threshold.append(np.asarray(tree["split_conditions"], np.float32))
            default_left.append(np.asarray(tree["default_left"], np.bool_))
            roots.append(offset)
            offset += len(lc)
        self.n_features = int(param["num_feature"])
        self._arrays = (_cat(left, np.int32), _cat(right, np.int32), _cat(feature, np.int32),
                        _cat(threshold, np.float32), _cat(default_left, np.bool_),
                        np.asarray(roots, np.int32), np.float32(base))
        self._check(booster)

    def margin(self, row: np.ndarray) -> float:
        """The raw score (log-odds) of one row of float32 model inputs."""
        return float(_margin(row, *self._arrays))

    def _check(self, booster, n: int = 256) -> None:
        """Compare with XGBoost on probe rows at every threshold, either side of it, and
        missing: a format this walk misreads is refused rather than served."""
        feature, threshold, left = self._arrays[2], self._arrays[3], self._arrays[0]
        rng = np.random.default_rng(0)
        probes = np.full((n, self.n_features), np.nan, np.float32)
        split = left != -1
        for j in range(self.n_features):
            cuts = threshold[split & (feature == j)]
            if not len(cuts):
                continue
            values = np.concatenate([cuts, np.nextafter(cuts, np.float32(-np.inf)),
                                     np.nextafter(cuts, np.float32(np.inf)), [np.nan]])
            probes[:, j] = rng.choice(values.astype(np.float32), n)
        want = booster.inplace_predict(probes, predict_type="margin")
        got = np.array([self.margin(probes[i]) for i in range(n)])
        bad = ~np.isclose(got, want, rtol=1e-5, atol=1e-5)
        if bad.any():
            raise UnsupportedForest(f"{int(bad.sum())} of {n} probe rows differ from "
                                    f"XGBoost's margin (largest gap "
                                    f"{float(np.max(np.abs(got - want))):.3g})")
