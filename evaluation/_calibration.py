"""Probability calibration on untouched out-of-time data.

Resampling and ``scale_pos_weight`` distort a model's probabilities; thresholds and costs
need probabilities that mean something. :class:`ScoreCalibrator` maps raw model margins
(log-odds) to calibrated probabilities and exports itself as plain JSON numbers, so the
served model applies it without unpickling anything.
"""

from __future__ import annotations

from typing import Literal

import numpy as np


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class ScoreCalibrator:
    """Calibrate raw margins (log-odds) into probabilities.

    Parameters
    ----------
    method : {"isotonic", "sigmoid"}
        Isotonic regression (monotone, non-parametric; needs a few hundred frauds) or Platt
        scaling (a logistic regression on the margin; robust with few frauds).

    Attributes
    ----------
    x_, y_ : ndarray
        Isotonic: the knots of the monotone step function, applied by linear interpolation
        and clipped at the ends (scikit-learn's ``IsotonicRegression`` semantics).
    coef_, intercept_ : float
        Sigmoid: ``p = 1 / (1 + exp(-(coef_ * margin + intercept_)))``.
    """

    def __init__(self, method: Literal["isotonic", "sigmoid"] = "isotonic"):
        self.method = method

    def fit(self, margin, y) -> ScoreCalibrator:
        """Fit on the margins and labels of a calibration window; returns ``self``."""
        m = np.asarray(margin, dtype=np.float64)
        y = np.asarray(y).astype(np.float64)
        if not y.any() or y.all():
            raise ValueError("calibration needs both frauds and legitimate rows in its window")
        if self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(m, y)
            self.x_ = np.asarray(iso.X_thresholds_, dtype=np.float64)
            self.y_ = np.asarray(iso.y_thresholds_, dtype=np.float64)
        elif self.method == "sigmoid":
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=1e6, tol=1e-10, max_iter=10_000).fit(m.reshape(-1, 1), y)
            self.coef_ = float(lr.coef_[0, 0])
            self.intercept_ = float(lr.intercept_[0])
        else:
            raise ValueError(f"method must be 'isotonic' or 'sigmoid', got {self.method!r}")
        return self

    def predict(self, margin) -> np.ndarray:
        """Calibrated fraud probabilities for raw margins."""
        m = np.asarray(margin, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(m, self.x_, self.y_)
        return _sigmoid(self.coef_ * m + self.intercept_)

    def to_dict(self) -> dict:
        """Plain-JSON parameters (see :meth:`from_dict`)."""
        if self.method == "isotonic":
            return {"method": "isotonic", "x": self.x_.tolist(), "y": self.y_.tolist()}
        return {"method": "sigmoid", "coef": self.coef_, "intercept": self.intercept_}

    @classmethod
    def from_dict(cls, spec: dict) -> ScoreCalibrator:
        """Rebuild a fitted calibrator from :meth:`to_dict` output."""
        cal = cls(spec["method"])
        if cal.method == "isotonic":
            cal.x_, cal.y_ = np.asarray(spec["x"], float), np.asarray(spec["y"], float)
        else:
            cal.coef_, cal.intercept_ = float(spec["coef"]), float(spec["intercept"])
        return cal
