"""The temporal protocol of one training: tuning folds, refit, calibration and test windows.

::

    |<---------------- development ---------------->|
    [ tuning folds (walk-back) ...... ][ calibration ][ gap ][ test window ]
    |<------------ refit ------------>|                      ^ deployment time v

The model is "deployed" at ``v``, the start of the test window: everything it learns from
(rows, labels, calibration) was known at ``v``. Rows are mature rows of the labeled dataset
only; the test window is labelled as known at the dataset's as-of time (the best truth we
have) and leaves out accounts already known compromised before ``v``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fraudlab.data_contracts import parse_duration
from fraudlab.evaluation import TemporalSplit, known_fraud_accounts, labels_known_at
from fraudlab.features import LABEL, FeaturesConfig, dataset_features

from ._config import TrainingConfig


@dataclass(frozen=True)
class Window:
    """Encoded inputs, labels and the metadata needed to score one window."""

    X: np.ndarray
    y: np.ndarray
    meta: pd.DataFrame  # tx_id, ts, account_id, amount (when a feature), fraud_type
    w: np.ndarray | None = None  # sample weights of a training window of sampled rows
    # A judging window of a sampled dataset holds every row; these are the rows' sample
    # weights (0 out of the sample), for what may be judged on the sample alone.
    sample: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    @property
    def frauds(self) -> int:
        return int(self.y.sum())


@dataclass(frozen=True)
class Fold:
    train: Window
    valid: Window
    times: dict


@dataclass
class Protocol:
    """Everything a search and a final fit need, encoded once."""

    spec: dict
    folds: list[Fold]
    refit: Window
    calibration: Window
    test: Window
    times: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """Row and fraud counts and the boundaries of every window (for logging)."""
        out = {"times": {k: str(v) for k, v in self.times.items()}}
        for name in ("refit", "calibration", "test"):
            w = getattr(self, name)
            out[name] = {"rows": len(w), "frauds": w.frauds}
            if w.w is not None:  # sampled: the rows the window stands for
                out[name]["rows_represented"] = round(float(w.w.sum()))
        out["folds"] = [{"train_rows": len(f.train), "train_frauds": f.train.frauds,
                         "valid_rows": len(f.valid), "valid_frauds": f.valid.frauds,
                         **{k: str(v) for k, v in f.times.items()}} for f in self.folds]
        return out


def preprocessing_spec(dataset: pd.DataFrame) -> dict:
    """The served model's explicit preprocessing: the features the dataset was built with,
    in their order, with the fixed categories of categorical ones, and the hash of their
    declarations (``features_version``)."""
    from ._served import PREPROCESSING_VERSION

    feats = [f for f in dataset_features(dataset).features if f.name in dataset.columns]
    if not feats:
        raise ValueError("the dataset has no feature columns")
    return {"version": PREPROCESSING_VERSION, "features": [f.name for f in feats],
            "categories": {f.name: list(f.categories) for f in feats if f.kind == "category"},
            "features_version": dataset.attrs.get("catalog_version", "unknown")}


def without_flat_features(spec: dict, rows: pd.DataFrame) -> dict:
    """The spec without the features that hold one value, or none, over ``rows``.

    A model cannot learn from a feature that never varies in what it is trained and
    calibrated on (a column the data do not have, a field filled with one constant), so
    such features are left out of its inputs and named under ``left_out``, with the reason.
    A feature that is sometimes missing and otherwise constant stays: missing or not is
    information. The model's ``features.json`` still holds every declaration of its
    dataset, so the inputs it keeps can be recomputed whatever they read.

    Raises
    ------
    ProtocolError
        When no feature varies.
    """
    left_out = {}
    for name in spec["features"]:
        col = rows[name]
        if not col.notna().any():
            left_out[name] = "all missing"
        elif col.nunique(dropna=False) <= 1:
            value = col.iloc[0]
            left_out[name] = f"constant ({value:g})" if isinstance(value, (int, float, np.number)) \
                else f"constant ({value})"
    if not left_out:
        return spec
    kept = [f for f in spec["features"] if f not in left_out]
    if not kept:
        raise ProtocolError(f"every one of the {len(left_out)} features is constant or all "
                            "missing in the rows before the test window: there is nothing "
                            "to learn from")
    return {**spec, "features": kept,
            "categories": {k: v for k, v in spec["categories"].items() if k in kept},
            "left_out": left_out}


def _window(frame: pd.DataFrame, spec: dict, y: np.ndarray, *, train: bool = False) -> Window:
    """``train``: a training window, which holds only the sampled rows (with their weights)
    when the dataset's legitimate rows were sampled; the others hold every row (and the
    sample's weights in ``sample``)."""
    from ._served import encode

    w = sample = None
    if SAMPLE_WEIGHT in frame.columns:
        sample = frame[SAMPLE_WEIGHT].to_numpy(np.float32)
    if train and sample is not None:
        frame, y, w, sample = frame[sample > 0], np.asarray(y)[sample > 0], sample[sample > 0], None
    cols = [c for c in ("tx_id", "ts", "account_id", "amount", "fraud_type", "channel")
            if c in frame.columns]
    return Window(encode(spec, frame), np.asarray(y, dtype=np.int8),
                  frame[cols].reset_index(drop=True), w, sample)


SAMPLE_WEIGHT = "sample_weight"
"""Column of a dataset whose legitimate rows were sampled (:func:`sample_negatives`)."""


def _uniform(tx_id: pd.Series, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per transaction id, the same for an id whatever the rows
    around it (the parts a dataset is read in, their order)."""
    key = f"fraudlab{seed % 10**8:08d}"
    h = pd.util.hash_pandas_object(tx_id.astype(str), index=False, hash_key=key).to_numpy()
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def sample_negatives(dataset: pd.DataFrame, rate: float, *, seed: int = 42,
                     keep_from=None) -> pd.DataFrame:
    """Sample the legitimate rows a model is trained on, keeping every fraud.

    A legitimate row (by the dataset's label) is in the sample with probability ``rate``,
    decided by a hash of its ``tx_id`` and ``seed`` (so a row's fate does not depend on how
    the dataset is read), and then weighs ``1 / rate``: the sampled training windows stand
    for all their rows, and sums, fraud ratios and rebalancing targets keep their meaning.
    Frauds weigh 1. The protocol trains only on rows of positive weight; its validation,
    calibration and test windows take every row, so metrics and thresholds are those of the
    whole population.

    Parameters
    ----------
    dataset : DataFrame
        A labeled dataset (``tx_id``, ``ts``, the label).
    rate : float
        Share of the legitimate rows kept for training, in (0, 1].
    seed : int
    keep_from : timestamp, optional
        Rows at or after it all stay (out of the sample with weight 0: the windows that
        judge a model need them); older rows out of the sample are dropped. Default: no row
        is dropped.

    Returns
    -------
    DataFrame
        The rows kept, with a ``sample_weight`` column; ``attrs`` record the rate.
    """
    if not 0 < rate <= 1:
        raise ValueError(f"negative_rate must be in (0, 1], got {rate}")
    legit = dataset[LABEL].to_numpy() != 1
    sampled = ~legit | (_uniform(dataset["tx_id"], seed) < rate)
    w = np.where(legit, 1.0 / rate, 1.0).astype(np.float32)
    w[~sampled] = 0.0
    keep = sampled.copy()
    if keep_from is None:
        keep[:] = True
    else:
        from fraudlab.data_contracts import to_utc

        keep |= (dataset["ts"] >= to_utc(keep_from)).to_numpy()
    # A shallow copy: copy-on-write keeps the caller's frame as it is.
    out = dataset[keep].reset_index(drop=True) if not keep.all() else dataset.copy(deep=False)
    out[SAMPLE_WEIGHT] = w[keep]
    out.attrs = {**dataset.attrs, "negative_rate": rate}
    return out


def judged_from(mature_end, config: TrainingConfig) -> pd.Timestamp:
    """The oldest time a row can hold in a validation, calibration or test window of the
    protocol laid over mature rows ending at ``mature_end`` (a day earlier, for safety):
    older rows are only ever trained on, so their legitimate part may be sampled."""
    gap = parse_duration(config.gap or FeaturesConfig().label_maturity)
    span = (parse_duration(config.test_window) + gap + parse_duration(config.calibration_window)
            + config.n_splits * parse_duration(config.validation_window) + gap)
    return pd.Timestamp(mature_end) - span - pd.Timedelta("1D")


_MIN_TRAINING = "1d"  # the oldest fold's training rows, when training takes all history


class ProtocolError(ValueError):
    """The dataset cannot hold the configured temporal protocol: too little history, or a
    window without frauds. The message says how much history the settings need."""


def history_needed(config: TrainingConfig) -> pd.Timedelta:
    """The span of mature rows the protocol needs: test window, gap, calibration window,
    ``n_splits`` validation windows, a gap, and the training window of the oldest fold
    (``train_window``, or at least a day of rows when training takes all history)."""
    gap = parse_duration(config.gap or FeaturesConfig().label_maturity)
    valid = parse_duration(config.validation_window)
    train = parse_duration(config.train_window or _MIN_TRAINING)
    return (parse_duration(config.test_window) + gap + parse_duration(config.calibration_window)
            + config.n_splits * valid + gap + train)


def _needs(config: TrainingConfig) -> str:
    gap = config.gap or FeaturesConfig().label_maturity
    return (f"training.test_window {config.test_window} + gap {gap} + calibration_window "
            f"{config.calibration_window} + {config.n_splits} x validation_window "
            f"{config.validation_window} + gap {gap} + training rows of at least "
            f"{config.train_window or _MIN_TRAINING} = {history_needed(config).days} days; "
            "shorten training.n_splits, validation_window, calibration_window, test_window "
            "or gap, or bring more history")


def _no_fraud(name: str, w: Window) -> None:
    if len(w) == 0 or w.frauds == 0:
        left_out = (" (after leaving out the accounts reported compromised before it)"
                    if name in ("calibration", "test") or name.endswith("validation") else "")
        raise ProtocolError(f"the {name} window has {len(w):,} rows and {w.frauds} frauds"
                            f"{left_out}: the dataset is too short or too clean for the "
                            "configured windows (training.test_window, calibration_window, "
                            "validation_window, gap, n_splits)")


def build_protocol(dataset: pd.DataFrame, config: TrainingConfig | None = None) -> Protocol:
    """Lay the temporal protocol over a labeled dataset and encode every window.

    Parameters
    ----------
    dataset : DataFrame
        From :func:`fraudlab.features.build_dataset`; immature rows are left out.
    config : TrainingConfig, optional

    Raises
    ------
    ProtocolError
        When the mature rows span less than :func:`history_needed`, or a window would hold
        no rows or no frauds.
    """
    config = config or TrainingConfig()
    # Without a configured gap, the label maturity: a model deployed at the test window's
    # start then learns and calibrates only from rows whose labels had time to arrive.
    gap = config.gap or FeaturesConfig().label_maturity
    spec = preprocessing_spec(dataset)
    if config.negative_rate < 1 and SAMPLE_WEIGHT not in dataset.columns:
        dataset = sample_negatives(dataset, config.negative_rate, seed=config.seed)
    data = dataset[dataset["is_mature"].to_numpy()].reset_index(drop=True)
    if data.empty:
        raise ProtocolError("the dataset has no mature rows (all labels still too recent "
                            "for features.label_maturity)")
    have = data["ts"].max() - data["ts"].min()
    if have < history_needed(config):
        raise ProtocolError(
            f"the mature rows span {have / pd.Timedelta('1D'):.1f} days "
            f"({data['ts'].min():%Y-%m-%d} .. {data['ts'].max():%Y-%m-%d}; rows younger than "
            "features.label_maturity at the as-of time are not mature); the configured "
            f"protocol needs {_needs(config)}")
    outer = TemporalSplit(1, validation_window=config.test_window, gap=gap)
    t = outer.fold_times(data)[0]
    try:
        dev_pos, test_pos = next(outer.split(data))
    except ValueError as exc:
        raise ProtocolError(f"the outer test split (training.test_window {config.test_window} "
                            f"after a gap of {gap}) leaves no rows on one side: "
                            f"{_needs(config)}") from exc
    deploy = t["valid_start"]
    dev = data.iloc[dev_pos].reset_index(drop=True)
    spec = without_flat_features(spec, dev)
    dev_y = labels_known_at(dev, deploy)
    cal_start = t["cut"] - parse_duration(config.calibration_window)
    in_cal = (dev["ts"] >= cal_start).to_numpy()
    test = data.iloc[test_pos]
    # The final fit learns from the same length of history as each fold's training (the
    # search tuned rounds and regularisation for it), right before calibration.
    before_cal = ~in_cal
    in_fit = before_cal.copy()
    if config.train_window:
        in_fit &= (dev["ts"] >= cal_start - parse_duration(config.train_window)).to_numpy()
    # Calibration and thresholds are chosen on the population the model will rank, as in
    # the test window: an account already reported compromised is frozen, not reviewed,
    # and its burst of high scores would otherwise take the review capacity.
    in_cal = in_cal & ~dev["account_id"].isin(known_fraud_accounts(dev, cal_start)).to_numpy()
    refit_frame = dev[before_cal].reset_index(drop=True)
    refit_y = dev_y[before_cal]
    refit = _window(dev[in_fit].reset_index(drop=True), spec, dev_y[in_fit], train=True)
    times = {"train_start": refit.meta["ts"].min(), "calibration_start": cal_start,
             "calibration_end": t["cut"], "test_start": deploy, "test_end": t["valid_end"]}
    protocol = Protocol(spec=spec, folds=[], times=times, refit=refit,
                        calibration=_window(dev[in_cal], spec, dev_y[in_cal]),
                        test=_window(test, spec, test[LABEL].to_numpy()))
    splitter = TemporalSplit(config.n_splits, validation_window=config.validation_window,
                             gap=gap, train_window=config.train_window, end=cal_start)
    try:
        folds = list(splitter.split(refit_frame))
    except ValueError as exc:
        raise ProtocolError(f"validation {exc}: {_needs(config)}") from exc
    for (tr, va), ft in zip(folds, splitter.fold_times(refit_frame), strict=True):
        train = refit_frame.iloc[tr]
        fold = Fold(train=_window(train, spec, labels_known_at(train, ft["valid_start"]),
                                  train=True),
                    valid=_window(refit_frame.iloc[va], spec, refit_y[va]), times=ft)
        _no_fraud(f"fold {len(protocol.folds)} training", fold.train)
        _no_fraud(f"fold {len(protocol.folds)} validation", fold.valid)
        protocol.folds.append(fold)
    for name in ("refit", "calibration", "test"):
        _no_fraud(name, getattr(protocol, name))
    return protocol
