"""A simulated payments world with realistic customers and seven fraud scenarios.

The simulator is vectorised over customers and transactions; only fraud incidents (a
few thousand even for a million transactions) are generated one at a time. Every random
component draws from its own child of one :class:`numpy.random.SeedSequence`, so the
same seed gives the same world, byte for byte, and a change to one scenario does not
shift the others.

The world starts in the middle of its customers' lives: ``history_days`` of activity
before the period are written too (dated before ``start``), with the established fraud
scenarios, so the period's first day sees settled device, channel and amount histories.
Account lifecycle events (device binds, password resets, profile changes) go back to each
account's opening, as a profile system keeps them; transactions and logins go back
``history_days``.

Ground truth that a real feed would not carry (which transactions are fraud but were
never reported, which reports are wrong) is only in the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fraudlab.data_contracts import CHANNELS, SCHEMAS

from ._config import SimulationConfig

DAY = 86_400
HOUR = 3_600

# Cities where customers live (name, lat, lon, population weight) and far-away places
# where stolen cards are used.
_CITIES = (
    ("Shanghai", 31.23, 121.47, 10), ("Beijing", 39.90, 116.40, 10),
    ("Guangzhou", 23.13, 113.26, 7), ("Shenzhen", 22.54, 114.06, 7),
    ("Chengdu", 30.57, 104.07, 6), ("Hangzhou", 30.27, 120.15, 5),
    ("Wuhan", 30.59, 114.31, 5), ("Xi'an", 34.34, 108.94, 4),
    ("Nanjing", 32.06, 118.80, 4), ("Chongqing", 29.56, 106.55, 6),
    ("Tianjin", 39.34, 117.36, 4), ("Suzhou", 31.30, 120.59, 3),
    ("Changsha", 28.23, 112.94, 3), ("Zhengzhou", 34.75, 113.62, 3),
    ("Kunming", 25.04, 102.71, 2), ("Harbin", 45.80, 126.53, 2),
    ("Xiamen", 24.48, 118.09, 2), ("Qingdao", 36.07, 120.38, 2),
)
_FAR_PLACES = (
    ("Singapore", 1.35, 103.82), ("Bangkok", 13.76, 100.50), ("Kuala Lumpur", 3.14, 101.69),
    ("Dubai", 25.20, 55.27), ("Lagos", 6.52, 3.38), ("Moscow", 55.75, 37.62),
    ("Urumqi", 43.83, 87.62), ("Lhasa", 29.65, 91.13),
)
# Merchant categories: (name, weight, amount multiplier).
_CATEGORIES = (
    ("grocery", 30, 0.6), ("restaurant", 25, 0.8), ("transport", 12, 0.4),
    ("fashion", 8, 1.8), ("electronics", 5, 4.0), ("travel", 4, 5.0),
    ("utilities", 6, 1.5), ("digital_goods", 6, 0.5), ("gaming", 4, 0.7),
)
_CHANNEL_ALPHA = np.array([4.0, 2.5, 1.0, 1.0, 2.0, 1.5])  # app, mini_program, h5, web, pos_qr, pos_card
_TX_TYPE_P = {"payment": 0.64, "transfer": 0.20, "top_up": 0.07, "withdrawal": 0.05, "refund": 0.04}
# Share of an hour's traffic by hour of day (UTC is used as local time in the simulation).
_DIURNAL = np.array([
    1.2, 0.7, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 4.0, 4.8, 5.0, 5.6,
    6.4, 5.8, 5.0, 4.9, 5.0, 5.4, 6.2, 6.8, 6.9, 6.0, 4.2, 2.4,
])
_DIURNAL = _DIURNAL / _DIURNAL.sum()
_WEEKDAY = np.array([0.95, 0.95, 1.0, 1.0, 1.1, 1.2, 1.05])  # Monday..Sunday

FRAUD_TYPES = (
    "card_testing",
    "large_off_location",
    "account_takeover",
    "mule_account",
    "compromised_merchant",
    "blacklisted_entity",
    "device_farm",
)
"""Fraud scenarios written to ``labels.fraud_type``; ``device_farm`` is the emerging one."""

# Share of fraud transactions per scenario, and the mean transactions per incident.
_SCENARIO_SHARE = {
    "card_testing": 0.26, "large_off_location": 0.10, "account_takeover": 0.13,
    "mule_account": 0.17, "compromised_merchant": 0.12, "blacklisted_entity": 0.10,
    "device_farm": 0.22,
}
_SCENARIO_TX_PER_INCIDENT = {
    "card_testing": 20.0, "large_off_location": 2.0, "account_takeover": 3.5,
    "mule_account": 18.0, "compromised_merchant": 25.0, "blacklisted_entity": 1.5,
    "device_farm": 37.0,
}
# Which source reports each scenario, with probabilities.
_REPORT_SOURCES = {
    "card_testing": (("chargeback", 0.55), ("manual_review", 0.30), ("bank_report", 0.15)),
    "large_off_location": (("chargeback", 0.6), ("customer_report", 0.4)),
    "account_takeover": (("customer_report", 0.75), ("manual_review", 0.25)),
    "mule_account": (("customer_report", 0.5), ("bank_report", 0.3), ("internal", 0.2)),
    "compromised_merchant": (("chargeback", 0.8), ("bank_report", 0.2)),
    "blacklisted_entity": (("manual_review", 0.5), ("internal", 0.3), ("chargeback", 0.2)),
    "device_farm": (("internal", 0.5), ("manual_review", 0.3), ("chargeback", 0.2)),
}
# What a customer claims when they wrongly report a legitimate payment of theirs.
_WRONG_REPORT_CLAIMS = {
    "transfer": (("account_takeover", 0.6), ("mule_account", 0.4)),
    "other": (("large_off_location", 0.5), ("card_testing", 0.3), ("compromised_merchant", 0.2)),
}
# Mean life of a device id: phones are replaced, apps reinstalled, fingerprints reset.
_DEVICE_LIFE_DAYS = 90.0
# Label delay per source in days: (fixed minimum, gamma shape, gamma scale).
_DELAY_DAYS = {
    "chargeback": (10.0, 2.0, 12.0),
    "customer_report": (0.1, 1.5, 2.0),
    "manual_review": (0.02, 1.0, 0.6),
    "bank_report": (1.0, 2.0, 4.0),
    "internal": (2.0, 2.0, 5.0),
}


@dataclass
class SimulatedWorld:
    """The five canonical tables of a simulated world, and its manifest."""

    transactions: pd.DataFrame
    labels: pd.DataFrame
    events: pd.DataFrame
    blacklist: pd.DataFrame
    accounts: pd.DataFrame
    manifest: dict = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables by canonical name."""
        return {name: getattr(self, name) for name in SCHEMAS}


# --------------------------------------------------------------------------- helpers


def _ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    return np.array([f"{prefix}{n:0{width}d}" for n in numbers.tolist()], dtype=object)


def _ips(rng: np.random.Generator, first: np.ndarray, n: int) -> np.ndarray:
    """IPv4 strings with the given first octets and random rest."""
    rest = rng.integers(0, 256, size=(n, 3))
    return np.array(
        [f"{a}.{b}.{c}.{d}" for a, (b, c, d) in zip(first.tolist(), rest.tolist(), strict=True)],
        dtype=object,
    )


def _choice_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a (n, k) probability matrix."""
    cum = probs.cumsum(axis=1)
    u = rng.random(len(probs))[:, None] * cum[:, -1:]
    return (u > cum).sum(axis=1)


def _hours(rng: np.random.Generator, peak: np.ndarray) -> np.ndarray:
    """Hour of day: a personal habit around ``peak`` mixed with the population curve."""
    personal = np.mod(np.rint(rng.normal(peak, 2.5)), 24).astype(np.int64)
    population = rng.choice(24, size=len(peak), p=_DIURNAL)
    return np.where(rng.random(len(peak)) < 0.65, personal, population)


def _label_delays(rng: np.random.Generator, sources: list[str]) -> np.ndarray:
    out = np.empty(len(sources))
    for i, src in enumerate(sources):
        lo, shape, scale = _DELAY_DAYS[src]
        out[i] = lo + rng.gamma(shape, scale)
    return np.rint(out * DAY).astype(np.int64)


@dataclass
class _Devices:
    """Each account's device ids over time: segments ``[start, next start)`` of one id,
    sorted by account, then start."""

    acct: np.ndarray
    start: np.ndarray
    ids: np.ndarray

    def __post_init__(self) -> None:
        self._keys = self.acct.astype(np.int64) * 2**32 + self.start

    def at(self, acct: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """The device id each account used at each time (None without one)."""
        acct = np.asarray(acct, dtype=np.int64)
        ts = np.broadcast_to(np.asarray(ts, dtype=np.int64), acct.shape)
        pos = np.searchsorted(self._keys, acct * 2**32 + ts, side="right") - 1
        ok = (pos >= 0) & (self.acct[np.maximum(pos, 0)] == acct)
        return np.where(ok, self.ids[np.maximum(pos, 0)], None)


@dataclass
class _Rows:
    """Column buffers for generated transactions or events."""

    cols: dict[str, list] = field(default_factory=dict)

    def add(self, **columns) -> None:
        lengths = [len(v) for v in columns.values() if np.ndim(v) == 1]
        n = max(lengths) if lengths else 1
        for k, v in columns.items():
            if np.ndim(v) == 0:  # a scalar applies to every row
                arr = np.full(n, v, dtype=object if v is None or isinstance(v, str) else None)
            else:
                arr = np.asarray(v)
            self.cols.setdefault(k, []).append(arr)

    def frame(self, columns: list[str]) -> pd.DataFrame:
        data = {}
        for c in columns:
            parts = self.cols.get(c)
            data[c] = np.concatenate(parts) if parts else np.array([], dtype=object)
        return pd.DataFrame(data)


# --------------------------------------------------------------------------- the world


class _World:
    def __init__(self, config: SimulationConfig):
        self.cfg = config
        seq = np.random.SeedSequence(config.seed)
        names = ["population", "merchants", "legit", "events", "labels", "blacklist",
                 *FRAUD_TYPES, "infra", "farm_cover"]
        self.rngs = dict(zip(names, (np.random.default_rng(s) for s in seq.spawn(len(names))),
                             strict=True))
        self.t0 = int(pd.Timestamp(config.start, tz="UTC").timestamp())
        self.t1 = self.t0 + config.days * DAY
        self.t_hist = self.t0 - config.history_days * DAY
        self.t_emerging = int(pd.Timestamp(config.emerging_start(), tz="UTC").timestamp())
        self.next_account = config.accounts
        self.used_devices: set[int] = set()
        self.extra_accounts = _Rows()
        self.fraud_tx = _Rows()
        self.n_fraud_tx = 0
        self.nurture_tx = _Rows()  # legitimate-looking payments of fraud-run accounts
        self.fraud_events = _Rows()
        self.blacklist = _Rows()
        self.incident_labels: list[tuple[str, np.ndarray]] = []
        # (entity_type, value, incident time, reason) listed once the fraud is discovered.
        self.blacklist_later: list[tuple[str, str, int, str]] = []
        self.reports: list[tuple[str, int]] = []

    # -- population ---------------------------------------------------------------
    def make_population(self) -> None:
        rng = self.rngs["population"]
        n = self.cfg.accounts
        w = np.array([c[3] for c in _CITIES], dtype=float)
        self.city_lat = np.array([c[1] for c in _CITIES])
        self.city_lon = np.array([c[2] for c in _CITIES])
        city = rng.choice(len(_CITIES), size=n, p=w / w.sum())
        self.home_city = city
        self.home_lat = np.round(self.city_lat[city] + rng.normal(0, 0.06, n), 5)
        self.home_lon = np.round(self.city_lon[city] + rng.normal(0, 0.06, n), 5)
        age_days = np.minimum(rng.lognormal(np.log(700), 0.9, n), 15 * 365)  # platform age
        created = self.t0 - (age_days * DAY).astype(np.int64)
        fresh = rng.random(n) < 0.05  # opened during the period
        created[fresh] = self.t0 + rng.integers(0, max(1, self.cfg.days - 1) * DAY, fresh.sum())
        self.created = created
        self.kyc = rng.choice(4, size=n, p=[0.08, 0.27, 0.48, 0.17])
        self.amount_mu = rng.normal(np.log(70), 0.55, n)
        self.amount_sigma = rng.uniform(0.45, 0.95, n)
        self.rate = rng.gamma(1.6, self.cfg.tx_per_account_day / 1.6, n)
        self.peak = np.where(rng.random(n) < 0.55, rng.normal(12.5, 2, n), rng.normal(20, 1.5, n))
        self.channel_p = rng.dirichlet(_CHANNEL_ALPHA, size=n)
        # A phone for everyone, a second device (a tablet, a laptop) for a quarter.
        self.device1 = self._device_timeline(rng, np.arange(n))
        self.has_device2 = rng.random(n) < 0.25
        self.device2 = self._device_timeline(rng, np.flatnonzero(self.has_device2))
        self.rooted = rng.random(n) < 0.02
        self.home_ip = _ips(rng, 36 + city * 3 + rng.integers(0, 3, n), n)
        # Usual payees are accounts that existed before the history (no payments to the future).
        old = created < self.t_hist
        self.established = np.flatnonzero(old) if old.any() else np.arange(n)
        self.payees = self._established(rng, (n, 3))
        # Most customers take no trip; some spend a few days in another city, at any time
        # of the history and the period (15% in a 120-day stretch).
        span = self.t1 - self.t_hist
        self.trip = rng.random(n) < min(0.9, 0.15 * span / (120 * DAY))
        self.trip_city = rng.integers(0, len(_CITIES), n)
        self.trip_start = self.t_hist + rng.integers(0, span, n)
        self.trip_end = self.trip_start + rng.integers(2, 8, n) * DAY

    def _established(self, rng: np.random.Generator, size) -> np.ndarray:
        """Random accounts that already existed when the period started."""
        return self.established[rng.integers(0, len(self.established), size=size)]

    def _device_timeline(self, rng: np.random.Generator, accts: np.ndarray) -> _Devices:
        """Device ids of ``accts`` from the start of the history to the end of the period.

        Ids live an exponential time (memoryless), so the id in use when the history
        starts was bound an exponential time before (not before the account opened), and
        the later changes are a Poisson process."""
        life = _DEVICE_LIFE_DAYS * DAY
        created = self.created[accts]
        first = np.maximum(created, self.t_hist - rng.exponential(life, len(accts)).astype(np.int64))
        begin = np.maximum(first, self.t_hist)
        span = np.maximum(0, self.t1 - begin)
        k = rng.poisson(span / life)
        which = np.repeat(np.arange(len(accts)), k)
        later = begin[which] + (rng.random(len(which)) * span[which]).astype(np.int64)
        acct = np.concatenate([accts, accts[which]]).astype(np.int64)
        start = np.concatenate([first, later]).astype(np.int64)
        order = np.lexsort((start, acct))
        return _Devices(acct[order], start[order], self._new_devices(len(acct)))

    def _new_devices(self, n: int) -> np.ndarray:
        """Fresh device ids, never given out before in this world.

        Ids are random numbers, so an id never tells whether it is a fraudster's."""
        rng = self.rngs["infra"]
        ids: list[int] = []
        while len(ids) < n:
            for d in rng.integers(0, 10**9, size=n - len(ids)).tolist():
                if d not in self.used_devices:
                    self.used_devices.add(d)
                    ids.append(d)
        return _ids("D", np.array(ids, dtype=np.int64), 9)

    def make_merchants(self) -> None:
        rng = self.rngs["merchants"]
        m = max(30, self.cfg.accounts // 25)
        self.n_merchants = m
        cw = np.array([c[3] for c in _CITIES], dtype=float)
        self.m_city = rng.choice(len(_CITIES), size=m, p=cw / cw.sum())
        self.m_lat = np.round(self.city_lat[self.m_city] + rng.normal(0, 0.05, m), 5)
        self.m_lon = np.round(self.city_lon[self.m_city] + rng.normal(0, 0.05, m), 5)
        kw = np.array([c[1] for c in _CATEGORIES], dtype=float)
        self.m_cat = rng.choice(len(_CATEGORIES), size=m, p=kw / kw.sum())
        self.m_mult = np.array([c[2] for c in _CATEGORIES])[self.m_cat]
        self.m_id = _ids("M", np.arange(m), 6)
        order = np.argsort(self.m_city, kind="stable")
        self.m_by_city = order
        self.m_city_start = np.searchsorted(self.m_city[order], np.arange(len(_CITIES)))
        self.m_city_count = np.bincount(self.m_city, minlength=len(_CITIES))
        # Each customer's usual merchants: six in the home city.
        n = self.cfg.accounts
        self.usual_merchants = self._merchants_in(rng, np.repeat(self.home_city, 6)).reshape(n, 6)

    def _merchants_in(self, rng: np.random.Generator, cities: np.ndarray) -> np.ndarray:
        count = self.m_city_count[cities]
        pick = np.where(count > 0, rng.integers(0, np.maximum(count, 1)), 0)
        idx = self.m_by_city[np.minimum(self.m_city_start[cities] + pick, self.n_merchants - 1)]
        # A city without merchants falls back to any merchant.
        return np.where(count > 0, idx, rng.integers(0, self.n_merchants, len(cities)))

    # -- legitimate activity -------------------------------------------------------
    def make_legit(self) -> pd.DataFrame:
        rng = self.rngs["legit"]
        cfg = self.cfg
        start = np.maximum(self.created, self.t_hist)
        active_days = np.maximum(0, self.t1 - start) / DAY
        counts = rng.poisson(self.rate * active_days)
        acct = np.repeat(np.arange(cfg.accounts), counts)
        n = len(acct)
        day = start[acct] // DAY + np.floor(rng.random(n) * active_days[acct]).astype(np.int64)
        day0 = self.t_hist // DAY
        keep = (rng.random(n) * _WEEKDAY.max()) < _WEEKDAY[(day + 3) % 7]  # 1970-01-01 was a Thursday
        acct, day = acct[keep], day[keep]
        n = len(acct)
        hour = _hours(rng, self.peak[acct])
        ts = day * DAY + hour * HOUR + rng.integers(0, HOUR, n)
        ts = np.clip(ts, np.maximum(start[acct], day0 * DAY), self.t1 - 1)

        types = np.array(list(_TX_TYPE_P))
        tx_type = rng.choice(types, size=n, p=np.array(list(_TX_TYPE_P.values())))
        ch = _choice_rows(rng, self.channel_p[acct])
        channel = np.array(CHANNELS, dtype=object)[ch]
        is_pay = tx_type == "payment"
        # Card-present channels only take payments.
        channel = np.where(~is_pay & np.isin(channel, ["pos_qr", "pos_card"]), "app", channel)

        on_trip = self.trip[acct] & (ts >= self.trip_start[acct]) & (ts < self.trip_end[acct])
        city = np.where(on_trip, self.trip_city[acct], self.home_city[acct])
        usual = self.usual_merchants[acct, rng.integers(0, 6, n)]
        other = self._merchants_in(rng, city)
        merchant = np.where(on_trip | (rng.random(n) < 0.15), other, usual)
        has_merchant = is_pay | (tx_type == "refund")
        merchant_id = np.where(has_merchant, self.m_id[merchant], None)

        payee = np.where(rng.random(n) < 0.8, self.payees[acct, rng.integers(0, 3, n)],
                         self._established(rng, n))
        counterparty_id = np.where(tx_type == "transfer", _ids("A", payee, 7), None)

        mult = np.where(has_merchant, self.m_mult[merchant], 1.0)
        mult = np.where(tx_type == "top_up", 3.0, np.where(tx_type == "withdrawal", 4.0, mult))
        mult = np.where(tx_type == "transfer", 2.5, mult)
        amount = np.exp(rng.normal(self.amount_mu[acct], self.amount_sigma[acct])) * mult
        amount = np.where(tx_type == "refund", amount * 0.5, amount)
        verification = (channel == "pos_card") | ((channel == "app") & is_pay)
        amount = np.where(verification & (rng.random(n) < 0.003), 0.0, np.round(amount, 2))
        currency = np.where(rng.random(n) < 0.985, "CNY", np.where(rng.random(n) < 0.5, "USD", "HKD"))

        card_present = channel == "pos_card"
        second = self.has_device2[acct] & (rng.random(n) < 0.3)
        device = np.where(second, self.device2.at(acct, ts), self.device1.at(acct, ts))
        device_id = np.where(card_present, None, device)
        mobile_ip = _ips(rng, rng.integers(100, 124, n), n)
        ip = np.where(rng.random(n) < 0.78, self.home_ip[acct], mobile_ip)
        ip = np.where(card_present, None, ip)

        at_merchant = np.isin(channel, ["pos_qr", "pos_card"])
        lat = np.where(at_merchant, self.m_lat[merchant],
                       np.where(on_trip, self.city_lat[city] + rng.normal(0, 0.04, n),
                                self.home_lat[acct] + rng.normal(0, 0.02, n)))
        lon = np.where(at_merchant, self.m_lon[merchant],
                       np.where(on_trip, self.city_lon[city] + rng.normal(0, 0.04, n),
                                self.home_lon[acct] + rng.normal(0, 0.02, n)))
        no_geo = np.isin(channel, ["web", "h5"]) & (rng.random(n) < 0.6)
        lat = np.where(no_geo, np.nan, np.round(lat, 5))
        lon = np.where(no_geo, np.nan, np.round(lon, 5))
        self.legit_acct = acct
        return pd.DataFrame({
            "ts": ts, "account_id": _ids("A", acct, 7), "counterparty_id": counterparty_id,
            "merchant_id": merchant_id, "amount": amount, "currency": currency,
            "channel": channel, "tx_type": tx_type, "device_id": device_id, "ip": ip,
            "lat": lat, "lon": lon,
        })

    def make_legit_events(self, legit: pd.DataFrame) -> pd.DataFrame:
        """Logins before online sessions, background logins, the odd failure and reset."""
        rng = self.rngs["events"]
        acct = self.legit_acct
        online = ~legit["channel"].isin(["pos_qr", "pos_card"]).to_numpy()
        login = online & (rng.random(len(legit)) < 0.7)
        idx = np.flatnonzero(login)
        n = len(idx)
        ts = legit["ts"].to_numpy()[idx] - rng.integers(5, 900, n)
        a = acct[idx]
        device = legit["device_id"].to_numpy()[idx]
        ip = legit["ip"].to_numpy()[idx]
        lat = np.where(np.isnan(legit["lat"].to_numpy()[idx]), self.home_lat[a],
                       legit["lat"].to_numpy()[idx])
        lon = np.where(np.isnan(legit["lon"].to_numpy()[idx]), self.home_lon[a],
                       legit["lon"].to_numpy()[idx])
        kind = np.full(n, "login", dtype=object)
        parts = [(ts, a, kind, device, ip, lat, lon)]
        # A mistyped password now and then, seconds before a successful login.
        typo = rng.random(n) < 0.025
        parts.append((ts[typo] - rng.integers(10, 90, typo.sum()), a[typo],
                      np.full(typo.sum(), "login_failed", dtype=object), device[typo], ip[typo],
                      lat[typo], lon[typo]))
        # OTP failures before some transfers.
        tr = np.flatnonzero(online & (legit["tx_type"].to_numpy() == "transfer")
                            & (rng.random(len(legit)) < 0.01))
        parts.append((legit["ts"].to_numpy()[tr] - rng.integers(20, 200, len(tr)), acct[tr],
                      np.full(len(tr), "otp_failed", dtype=object),
                      legit["device_id"].to_numpy()[tr], legit["ip"].to_numpy()[tr],
                      self.home_lat[acct[tr]], self.home_lon[acct[tr]]))
        # Background activity: logins without payment (from the start of the history), rare
        # resets and profile changes (from the account's opening: lifecycle events).
        cfg = self.cfg
        n_activity = len(parts) + 1
        for kind_name, per_day in (("login", 0.25), ("password_reset", 0.002),
                                   ("profile_change", 0.003)):
            start = np.maximum(self.created, self.t_hist if kind_name == "login" else self.created)
            span = np.maximum(1, self.t1 - start)
            c = rng.poisson(per_day * span / DAY)
            aa = np.repeat(np.arange(cfg.accounts), c)
            tt = start[aa] + (rng.random(len(aa)) * span[aa]).astype(np.int64)
            parts.append((tt, aa, np.full(len(aa), kind_name, dtype=object),
                          self.device1.at(aa, tt), self.home_ip[aa], self.home_lat[aa],
                          self.home_lon[aa]))
        # Device binds: every device id, when it starts to be used.
        for devices in (self.device1, self.device2):
            a = devices.acct
            parts.append((devices.start, a, np.full(len(a), "device_bind", dtype=object),
                          devices.ids, self.home_ip[a], self.home_lat[a], self.home_lon[a]))
        lifecycle = np.concatenate([np.full(len(p[0]), i >= n_activity) for i, p in enumerate(parts)])
        cols = [np.concatenate(p) for p in zip(*parts, strict=True)]
        # Logins just before the first payment of the history fall before it: drop them.
        inside = ((cols[0] >= self.t_hist) | lifecycle) & (cols[0] < self.t1)
        cols = [c[inside] for c in cols]
        a_all = cols[1]
        out = pd.DataFrame({
            "ts": cols[0], "account_id": _ids("A", a_all, 7),
            "event_type": cols[2], "device_id": cols[3], "ip": cols[4],
            "lat": np.round(cols[5].astype(float), 5), "lon": np.round(cols[6].astype(float), 5),
            "is_emulator": False, "is_rooted": self.rooted[a_all],
        })
        return out

    # -- fraud ---------------------------------------------------------------------
    def _victims(self, rng: np.random.Generator, k: int, at: int) -> np.ndarray:
        """k distinct accounts open at time ``at``."""
        cand = rng.integers(0, self.cfg.accounts, size=4 * k + 8)
        cand = cand[self.created[cand] < at - DAY]
        cand = pd.unique(cand)[:k]
        return cand

    def _fraud_kit(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Devices and IPs of a fraud ring: fresh devices, foreign or proxy IPs."""
        return self._new_devices(n), _ips(rng, rng.choice([5, 31, 45, 91, 185, 194], n), n)

    def _new_accounts(self, rng: np.random.Generator, n: int, created: np.ndarray,
                      city: np.ndarray) -> np.ndarray:
        ids = np.arange(self.next_account, self.next_account + n)
        self.next_account += n
        self.extra_accounts.add(
            account_id=_ids("A", ids, 7), created_at=created,
            home_lat=np.round(self.city_lat[city] + rng.normal(0, 0.06, n), 5),
            home_lon=np.round(self.city_lon[city] + rng.normal(0, 0.06, n), 5),
            kyc_level=rng.choice([0, 1], size=n, p=[0.7, 0.3]),
        )
        return _ids("A", ids, 7)

    def _incident_times(self, rng: np.random.Generator, k: int, lo: int, hi: int) -> np.ndarray:
        days = rng.integers(lo // DAY, max(lo // DAY + 1, hi // DAY), k)
        return days * DAY + rng.choice(24, size=k, p=_DIURNAL) * HOUR + rng.integers(0, HOUR, k)

    def _incidents(self, scenario: str, n_legit: int) -> int:
        span = self.t1 - self.t_hist
        active = span if scenario != "device_farm" else max(0, self.t1 - self.t_emerging)
        share = self.cfg.emerging_share if scenario == "device_farm" else _SCENARIO_SHARE[scenario]
        target_tx = self.cfg.fraud_rate * n_legit * share * active / span
        k = target_tx / _SCENARIO_TX_PER_INCIDENT[scenario]
        rng = self.rngs[scenario]
        # Every scenario appears at least once when its period is long enough.
        return int(max(1 if active >= 2 * DAY else 0, rng.poisson(k)))

    def _add_fraud(self, scenario: str, **cols) -> None:
        start = self.n_fraud_tx
        self.fraud_tx.add(**cols)
        self.n_fraud_tx += len(self.fraud_tx.cols["ts"][-1])
        self.incident_labels.append((scenario, np.arange(start, self.n_fraud_tx)))

    def _acct_geo(self, a: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return (np.round(self.home_lat[a] + rng.normal(0, 0.02, len(a)), 5),
                np.round(self.home_lon[a] + rng.normal(0, 0.02, len(a)), 5))

    def _digital_merchants(self) -> np.ndarray:
        idx = np.flatnonzero(np.isin(self.m_cat, [7, 8]))  # digital_goods, gaming
        return idx if len(idx) else np.arange(self.n_merchants)

    def fraud_card_testing(self, n_legit: int) -> None:
        rng = self.rngs["card_testing"]
        k = self._incidents("card_testing", n_legit)
        times = self._incident_times(rng, k, self.t_hist + DAY, self.t1 - DAY)
        digital = self._digital_merchants()
        for t in times:
            v = self._victims(rng, 1, t)
            if not len(v):
                continue
            a = int(v[0])
            m = int(rng.integers(8, 33))
            gaps = np.where(rng.random(m) < 0.15, 0, rng.exponential(25, m)).astype(np.int64)
            ts = t + np.cumsum(gaps)
            amount = np.where(rng.random(m) < 0.3, 0.0, np.round(rng.uniform(0.01, 5, m), 2))
            # A few larger charges once the card is known to work.
            big = int(rng.integers(1, 3))
            ts = np.concatenate([ts, ts[-1] + np.cumsum(rng.integers(60, 900, big))])
            amount = np.concatenate([amount, np.round(rng.uniform(300, 3000, big), 2)])
            tot = m + big
            transfer = rng.random() < 0.4
            dev, ip = self._fraud_kit(rng, 1)
            mule = _ids("A", self._established(rng, 1), 7)[0]
            self._add_fraud(
                "card_testing", ts=ts, account_id=_ids("A", np.array([a]), 7)[0],
                counterparty_id=mule if transfer else None,
                merchant_id=None if transfer else self.m_id[rng.choice(digital, tot)],
                amount=amount, currency="CNY", channel=rng.choice(["web", "h5", "app"]),
                tx_type="transfer" if transfer else "payment", device_id=dev[0], ip=ip[0],
                lat=np.nan, lon=np.nan,
            )
            self.blacklist_later.append(("device", dev[0], t, "card testing device"))

    def fraud_large_off_location(self, n_legit: int) -> None:
        rng = self.rngs["large_off_location"]
        k = self._incidents("large_off_location", n_legit)
        times = self._incident_times(rng, k, self.t_hist + DAY, self.t1 - DAY)
        big_cats = np.flatnonzero(np.isin(self.m_cat, [3, 4, 5]))  # fashion, electronics, travel
        for t in times:
            v = self._victims(rng, 1, t)
            if not len(v):
                continue
            a = int(v[0])
            m = int(rng.integers(1, 4))
            far = int(rng.integers(0, len(_FAR_PLACES)))
            lat0, lon0 = _FAR_PLACES[far][1], _FAR_PLACES[far][2]
            ts = t + np.cumsum(rng.integers(300, 3 * HOUR, m))
            usual = np.exp(self.amount_mu[a])
            amount = np.round(usual * rng.uniform(12, 45, m), 2)
            channel = rng.choice(["pos_card", "web", "app"], m, p=[0.6, 0.25, 0.15])
            dev, ip = self._fraud_kit(rng, 1)
            card_present = channel == "pos_card"
            self._add_fraud(
                "large_off_location", ts=ts, account_id=_ids("A", np.array([a]), 7)[0],
                counterparty_id=None, merchant_id=self.m_id[rng.choice(big_cats, m)],
                amount=amount, currency=rng.choice(["CNY", "USD"], m, p=[0.5, 0.5]),
                channel=channel, tx_type="payment",
                device_id=np.where(card_present, None, dev[0]),
                ip=np.where(card_present, None, ip[0]),
                lat=np.round(lat0 + rng.normal(0, 0.05, m), 5),
                lon=np.round(lon0 + rng.normal(0, 0.05, m), 5),
            )

    def fraud_account_takeover(self, n_legit: int) -> None:
        rng = self.rngs["account_takeover"]
        k = self._incidents("account_takeover", n_legit)
        times = self._incident_times(rng, k, self.t_hist + DAY, self.t1 - DAY)
        for t in times:
            v = self._victims(rng, 1, t)
            if not len(v):
                continue
            a = int(v[0])
            aid = _ids("A", np.array([a]), 7)[0]
            dev, ip = self._fraud_kit(rng, 1)
            far = int(rng.integers(0, len(_CITIES)))
            lat0 = self.city_lat[far] + rng.normal(0, 0.05)
            lon0 = self.city_lon[far] + rng.normal(0, 0.05)
            fails = int(rng.integers(3, 9))
            ev_ts = t + np.cumsum(rng.integers(5, 60, fails))
            reset = ev_ts[-1] + int(rng.integers(60, 900))
            bind = reset + int(rng.integers(30, 300))
            login = bind + int(rng.integers(5, 60))
            self.fraud_events.add(
                ts=np.concatenate([ev_ts, [reset, bind, login]]), account_id=aid,
                event_type=np.array(["login_failed"] * fails
                                    + ["password_reset", "device_bind", "login"], dtype=object),
                device_id=dev[0], ip=ip[0], lat=round(lat0, 5), lon=round(lon0, 5),
                is_emulator=False, is_rooted=bool(rng.random() < 0.3),
            )
            m = int(rng.integers(1, 6))
            ts = login + np.cumsum(rng.integers(60, 2 * HOUR, m))
            payee = self._new_accounts(rng, 1, np.array([t - int(rng.integers(1, 20)) * DAY]),
                                       np.array([far]))[0]
            self._add_fraud(
                "account_takeover", ts=ts, account_id=aid, counterparty_id=payee,
                merchant_id=None, amount=np.round(rng.uniform(800, 20000, m), 2),
                currency="CNY", channel="app", tx_type="transfer", device_id=dev[0], ip=ip[0],
                lat=round(lat0, 5), lon=round(lon0, 5),
            )
            self.blacklist_later.append(("account", payee, t, "account takeover payee"))

    def fraud_mule_account(self, n_legit: int) -> None:
        rng = self.rngs["mule_account"]
        k = self._incidents("mule_account", n_legit)
        times = self._incident_times(rng, k, self.t_hist + 2 * DAY, self.t1 - 3 * DAY)
        for t in times:
            city = int(rng.integers(0, len(_CITIES)))
            created = t - int(rng.integers(1, 10)) * DAY - int(rng.integers(0, DAY))
            mule = self._new_accounts(rng, 1, np.array([created]), np.array([city]))[0]
            payers = self._victims(rng, int(rng.integers(8, 26)), t)
            m = len(payers)
            ts = t + np.sort(rng.integers(0, int(rng.integers(1, 4)) * DAY, m))
            lat, lon = self._acct_geo(payers, rng)
            # Victims of a scam pay from their own phones, at home: only the payee is odd.
            self._add_fraud(
                "mule_account", ts=ts, account_id=_ids("A", payers, 7),
                counterparty_id=mule, merchant_id=None,
                amount=np.round(rng.uniform(500, 5000, m), 2), currency="CNY",
                channel=rng.choice(["app", "mini_program", "h5"], m, p=[0.7, 0.2, 0.1]),
                tx_type="transfer", device_id=self.device1.at(payers, ts), ip=self.home_ip[payers],
                lat=lat, lon=lon,
            )
            dev, ip = self._fraud_kit(rng, 1)
            w = int(rng.integers(1, 4))
            wts = ts[-1] + np.cumsum(rng.integers(10 * 60, 6 * HOUR, w))
            self._add_fraud(
                "mule_account", ts=wts, account_id=mule, counterparty_id=None,
                merchant_id=None, amount=np.round(rng.uniform(2000, 20000, w), 2),
                currency="CNY", channel="app", tx_type="withdrawal", device_id=dev[0],
                ip=ip[0], lat=np.nan, lon=np.nan,
            )
            self.blacklist_later.append(("counterparty", mule, t, "mule account"))

    def fraud_compromised_merchant(self, n_legit: int) -> None:
        rng = self.rngs["compromised_merchant"]
        k = self._incidents("compromised_merchant", n_legit)
        times = self._incident_times(rng, k, self.t_hist + DAY, self.t1 - 5 * DAY)
        for t in times:
            merchant = int(rng.integers(0, self.n_merchants))
            length = int(rng.integers(3, 11)) * DAY
            m = int(rng.integers(12, 40))
            payers = self._victims(rng, m, t)
            m = len(payers)
            ts = t + np.sort(rng.integers(0, length, m))
            amount = np.round(np.exp(self.amount_mu[payers]) * self.m_mult[merchant]
                              * rng.uniform(3, 10, m), 2)
            channel = rng.choice(["pos_card", "pos_qr"], m, p=[0.8, 0.2])
            card_present = channel == "pos_card"
            self._add_fraud(
                "compromised_merchant", ts=ts, account_id=_ids("A", payers, 7),
                counterparty_id=None, merchant_id=self.m_id[merchant], amount=amount,
                currency="CNY", channel=channel, tx_type="payment",
                device_id=np.where(card_present, None, self.device1.at(payers, ts)),
                ip=np.where(card_present, None, self.home_ip[payers]),
                lat=self.m_lat[merchant], lon=self.m_lon[merchant],
            )
            self.blacklist_later.append(("merchant", self.m_id[merchant], t + length,
                                         "compromised merchant"))

    def fraud_blacklisted_entity(self, n_legit: int) -> None:
        """Known-bad devices and IPs reused across victims; some are listed in advance."""
        rng = self.rngs["blacklisted_entity"]
        k = self._incidents("blacklisted_entity", n_legit)
        pool = max(3, k // 4)
        devs, ips = self._fraud_kit(rng, pool)
        listed_before = rng.random(pool) < 0.5
        for i in np.flatnonzero(listed_before):
            listed = self.t_hist - int(rng.integers(0, 60)) * DAY + int(rng.integers(0, DAY))
            src = rng.choice(["third_party", "card_scheme", "bank"])
            self.blacklist.add(entity_type="device", entity_value=devs[i], listed_at=listed,
                               delisted_at=None, source=src, reason="device linked to fraud")
            if rng.random() < 0.6:
                self.blacklist.add(entity_type="ip", entity_value=ips[i], listed_at=listed,
                                   delisted_at=None, source=src, reason="proxy used in fraud")
        times = self._incident_times(rng, k, self.t_hist + DAY, self.t1 - DAY)
        for t in times:
            v = self._victims(rng, 1, t)
            if not len(v):
                continue
            j = int(rng.integers(0, pool))
            m = int(rng.integers(1, 3))
            transfer = rng.random() < 0.5
            ts = t + np.cumsum(rng.integers(30, HOUR, m))
            self._add_fraud(
                "blacklisted_entity", ts=ts, account_id=_ids("A", v, 7)[0],
                counterparty_id=_ids("A", self._established(rng, m), 7)
                if transfer else None,
                merchant_id=None if transfer else self.m_id[rng.integers(0, self.n_merchants, m)],
                amount=np.round(np.exp(rng.normal(np.log(600), 0.8, m)), 2), currency="CNY",
                channel=rng.choice(["app", "h5", "web"]),
                tx_type="transfer" if transfer else "payment", device_id=devs[j], ip=ips[j],
                lat=np.nan, lon=np.nan,
            )
            if not listed_before[j]:
                self.blacklist_later.append(("device", devs[j], t, "device linked to fraud"))

    def fraud_device_farm(self, n_legit: int) -> None:
        """The emerging pattern: emulator farms driving nurtured accounts through mini_program.

        The farm opens its accounts weeks ahead and nurtures them: small payments at
        digital merchants from the farm's emulated devices, with locations spoofed near
        each account's stated home, in the daytime. By the attack every account has its
        device, channel, home and usual amounts, so a model that learned the older
        patterns (new devices, far from home, at night) lets it through; what gives it away
        is only new to this pattern: emulators, devices and IPs shared by several accounts,
        a burst of payments in one evening.
        """
        rng = self.rngs["device_farm"]
        # The cover (nurturing, spoofed locations) draws from a stream of its own: the
        # farm's incidents are the same with or without it.
        cover = self.rngs["farm_cover"]
        k = self._incidents("device_farm", n_legit)
        if self.t_emerging >= self.t1 - DAY:
            return
        times = self._incident_times(rng, k, self.t_emerging, self.t1 - DAY)
        digital = self._digital_merchants()
        for t in times:
            # In the evening rush, when a burst of payments stands out least.
            t = (t // DAY) * DAY + 18 * HOUR + int(rng.integers(0, 3 * HOUR))
            n_dev = int(rng.integers(3, 8))
            devs, ips = self._fraud_kit(rng, n_dev)
            ip_block = rng.integers(0, 256)
            ips = np.array([f"103.21.{ip_block}.{d}" for d in rng.integers(1, 255, n_dev)],
                           dtype=object)
            n_acc = int(rng.integers(8, 22))
            city = rng.integers(0, len(_CITIES), n_acc)
            created = t - rng.integers(30 * DAY, 90 * DAY, n_acc)
            accts = self._new_accounts(rng, n_acc, created, city)
            home_lat = self.extra_accounts.cols["home_lat"][-1]
            home_lon = self.extra_accounts.cols["home_lon"][-1]
            which = rng.integers(0, n_dev, n_acc)
            self.fraud_events.add(
                ts=created, account_id=accts, event_type="device_bind", device_id=devs[which],
                ip=ips[which], lat=np.round(home_lat, 5), lon=np.round(home_lon, 5),
                is_emulator=True, is_rooted=False,
            )
            # Nurturing: about one payment every four days between opening and the attack.
            per = cover.poisson(0.25 * (t - created) / DAY)
            n_idx = np.repeat(np.arange(n_acc), per)
            n = len(n_idx)
            span = (t - created[n_idx] - 2 * DAY) // DAY
            day = (created[n_idx] + DAY) // DAY + (cover.random(n) * span).astype(np.int64)
            nts = day * DAY + cover.choice(24, size=n, p=_DIURNAL) * HOUR + cover.integers(0, HOUR, n)
            nlat = np.round(home_lat[n_idx] + cover.normal(0, 0.02, n), 5)
            nlon = np.round(home_lon[n_idx] + cover.normal(0, 0.02, n), 5)
            inside = nts >= self.t_hist + HOUR  # activity starts with the written history
            n_idx, nts, nlat, nlon = n_idx[inside], nts[inside], nlat[inside], nlon[inside]
            n = len(n_idx)
            self.fraud_events.add(
                ts=nts - cover.integers(5, 120, n), account_id=accts[n_idx], event_type="login",
                device_id=devs[which[n_idx]], ip=ips[which[n_idx]], lat=nlat, lon=nlon,
                is_emulator=True, is_rooted=False,
            )
            self.nurture_tx.add(
                ts=nts, account_id=accts[n_idx], counterparty_id=None,
                merchant_id=self.m_id[cover.choice(digital, n)],
                amount=np.round(np.exp(cover.normal(np.log(90), 0.6, n)), 2), currency="CNY",
                channel="mini_program", tx_type="payment", device_id=devs[which[n_idx]],
                ip=ips[which[n_idx]], lat=nlat, lon=nlon,
            )
            per = rng.integers(1, 5, n_acc)
            a_idx = np.repeat(np.arange(n_acc), per)
            m = len(a_idx)
            ts = t + np.sort(rng.integers(0, 3 * HOUR, m))
            lat = np.round(home_lat[a_idx] + cover.normal(0, 0.02, m), 5)
            lon = np.round(home_lon[a_idx] + cover.normal(0, 0.02, m), 5)
            self.fraud_events.add(
                ts=ts - rng.integers(5, 120, m), account_id=accts[a_idx], event_type="login",
                device_id=devs[which[a_idx]], ip=ips[which[a_idx]], lat=lat, lon=lon,
                is_emulator=True, is_rooted=False,
            )
            farm_merchants = rng.choice(digital, 2)
            self._add_fraud(
                "device_farm", ts=ts, account_id=accts[a_idx], counterparty_id=None,
                merchant_id=self.m_id[rng.choice(farm_merchants, m)],
                amount=np.round(rng.uniform(60, 400, m), 2), currency="CNY",
                channel="mini_program", tx_type="payment", device_id=devs[which[a_idx]],
                ip=ips[which[a_idx]], lat=lat, lon=lon,
            )

    # -- blacklist and labels --------------------------------------------------------
    def make_background_blacklist(self) -> None:
        """Listings that have nothing to do with this period's fraud, some delisted."""
        rng = self.rngs["blacklist"]
        n = max(5, self.cfg.accounts // 200)
        kind = rng.choice(["account", "device", "ip", "card", "merchant"], n,
                          p=[0.3, 0.3, 0.25, 0.1, 0.05])
        accts = rng.integers(0, self.cfg.accounts, n)
        value = np.where(kind == "account", _ids("A", accts, 7),
                         np.where(kind == "device", self.device1.at(accts, self.t0),
                                  np.where(kind == "ip", self.home_ip[accts],
                                           np.where(kind == "merchant",
                                                    self.m_id[accts % self.n_merchants],
                                                    _ids("C", rng.integers(0, 10**12, n), 12)))))
        listed = self.t_hist + rng.integers(-365 * DAY, self.t1 - self.t_hist, n)
        delisted = listed + rng.integers(3 * DAY, 120 * DAY, n)
        delisted = np.where(rng.random(n) < 0.5, delisted, np.iinfo(np.int64).min)
        src = rng.choice(["regulator", "bank", "internal", "third_party", "card_scheme"], n)
        # An account opened after the start has no device yet: nothing of it to list.
        ok = np.array([v is not None for v in value], dtype=bool)
        delisted = np.where(delisted == np.iinfo(np.int64).min, None, delisted)
        self.blacklist.add(entity_type=kind[ok], entity_value=value[ok], listed_at=listed[ok],
                           delisted_at=delisted[ok], source=src[ok],
                           reason="listed by " + src[ok].astype(object))

    def make_labels(self, tx: pd.DataFrame, fraud_pos: np.ndarray,
                    legit_pos: np.ndarray) -> tuple[pd.DataFrame, dict]:
        rng = self.rngs["labels"]
        rows = _Rows()
        stats = {"fraud_transactions": {}, "labelled_fraud": {}, "unlabelled_fraud": 0}
        ts_all = tx["ts"].to_numpy()
        for scenario, local in self.incident_labels:
            pos = fraud_pos[local]
            stats["fraud_transactions"][scenario] = (
                stats["fraud_transactions"].get(scenario, 0) + len(pos))
            if rng.random() < self.cfg.unlabeled_fraud_share:
                stats["unlabelled_fraud"] += len(pos)
                continue
            names, p = zip(*_REPORT_SOURCES[scenario], strict=True)
            src = str(rng.choice(names, p=np.array(p)))
            # An incident is usually reported at once, after its last transaction.
            base = ts_all[pos].max() + _label_delays(rng, [src])[0]
            reported = base + rng.integers(0, HOUR, len(pos))
            rows.add(tx_pos=pos, is_fraud=True, reported_at=reported, source=src,
                     fraud_type=scenario)
            stats["labelled_fraud"][scenario] = stats["labelled_fraud"].get(scenario, 0) + len(pos)
            self.reports.append((scenario, int(reported.min())))
        n_noisy = rng.binomial(len(legit_pos), self.cfg.noisy_report_rate)
        n_review = rng.binomial(len(legit_pos), self.cfg.review_label_rate)
        picked = rng.choice(legit_pos, n_noisy + n_review, replace=False)
        noisy, review = picked[:n_noisy], picked[n_noisy:]
        # A wrong report names the fraud the customer believes happened; only the manifest
        # says it is wrong.
        transfer = tx["tx_type"].to_numpy()[noisy] == "transfer"
        claimed = np.empty(n_noisy, dtype=object)
        for kind, rows_of_kind in (("transfer", transfer), ("other", ~transfer)):
            names, p = zip(*_WRONG_REPORT_CLAIMS[kind], strict=True)
            claimed[rows_of_kind] = rng.choice(names, size=int(rows_of_kind.sum()), p=np.array(p))
        rows.add(tx_pos=noisy, is_fraud=True,
                 reported_at=ts_all[noisy] + _label_delays(rng, ["customer_report"] * n_noisy),
                 source="customer_report", fraud_type=claimed)
        rows.add(tx_pos=review, is_fraud=False,
                 reported_at=ts_all[review] + _label_delays(rng, ["manual_review"] * n_review),
                 source="manual_review", fraud_type=None)
        stats["noisy_reports"] = int(n_noisy)
        stats["wrong_report_tx_ids"] = sorted(tx["tx_id"].to_numpy()[noisy].tolist())
        stats["cleared_reviews"] = int(n_review)
        frame = rows.frame(["tx_pos", "is_fraud", "reported_at", "source", "fraud_type"])
        frame["tx_pos"] = frame["tx_pos"].astype(np.int64)
        frame = frame.sort_values(["reported_at", "tx_pos"], kind="stable")
        labels = pd.DataFrame({
            "tx_id": tx["tx_id"].to_numpy()[frame["tx_pos"].to_numpy()],
            "is_fraud": frame["is_fraud"].astype(bool).to_numpy(),
            "reported_at": frame["reported_at"].astype(np.int64).to_numpy(),
            "source": frame["source"].to_numpy(),
            "fraud_type": frame["fraud_type"].to_numpy(),
        })
        return labels, stats


def _to_utc(seconds: pd.Series | np.ndarray) -> pd.Series:
    values = pd.array(seconds, dtype="Int64")
    return pd.Series(pd.to_datetime(values, unit="s", utc=True)).astype("datetime64[us, UTC]")


def _canonical(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Order and type the columns of ``frame`` as the canonical schema says."""
    schema = SCHEMAS[table]
    out = {}
    for col in schema.columns:
        s = frame[col.name]
        if col.kind == "timestamp":
            s = _to_utc(s.to_numpy(dtype=object) if s.dtype == object else s.to_numpy())
        elif col.kind == "string":
            s = pd.Series(s.to_numpy(dtype=object)).astype("str")
            s = s.where(frame[col.name].notna().to_numpy(), None)
        elif col.kind == "float":
            s = pd.Series(s.to_numpy(dtype=float))
        elif col.kind == "int":
            s = pd.Series(s.to_numpy(dtype=np.int64))
        elif col.kind == "bool":
            s = pd.Series(s.to_numpy(dtype=bool))
        out[col.name] = s.reset_index(drop=True)
    return pd.DataFrame(out)


def simulate_world(config: SimulationConfig | None = None) -> SimulatedWorld:
    """Generate a simulated payments world.

    Parameters
    ----------
    config : SimulationConfig, optional
        Size, period, seed and fraud settings; defaults to ``SimulationConfig()``.

    Returns
    -------
    SimulatedWorld
        The five canonical tables (transactions, labels, events, blacklist, accounts),
        typed as the canonical schema says, and a manifest describing what was generated.

    Examples
    --------
    >>> from fraudlab.features import SimulationConfig, simulate_world
    >>> world = simulate_world(SimulationConfig(accounts=200, days=30, seed=1))
    >>> sorted(world.tables())
    ['accounts', 'blacklist', 'events', 'labels', 'transactions']
    """
    config = config or SimulationConfig()
    w = _World(config)
    w.make_population()
    w.make_merchants()
    legit = w.make_legit()
    n_legit = len(legit)
    events = w.make_legit_events(legit)
    for scenario in FRAUD_TYPES:
        getattr(w, f"fraud_{scenario}")(n_legit)
    w.make_background_blacklist()

    tx_cols = [c for c in SCHEMAS["transactions"].column_names if c != "tx_id"]
    nurture = w.nurture_tx.frame(tx_cols)
    if len(nurture):  # never reported: to the labels they are legitimate payments
        nurture["ts"] = nurture["ts"].astype(np.int64)
        legit = pd.concat([legit[tx_cols], nurture], ignore_index=True)
        n_legit = len(legit)
    fraud = w.fraud_tx.frame(tx_cols)
    fraud["ts"] = fraud["ts"].astype(np.int64)
    both = pd.concat([legit[tx_cols], fraud], ignore_index=True)
    both = both[(both["ts"] >= w.t_hist) & (both["ts"] < w.t1)] if len(fraud) else both
    origin = both.index.to_numpy()
    order = np.argsort(both["ts"].to_numpy(), kind="stable")
    tx = both.iloc[order].reset_index(drop=True)
    origin = origin[order]
    tx.insert(0, "tx_id", _ids("T", np.arange(len(tx)), 9))
    # Positions in the sorted table of every generated row (-1 when clipped away).
    where = np.full(n_legit + len(fraud), -1, dtype=np.int64)
    where[origin] = np.arange(len(tx))
    fraud_pos = where[n_legit:]
    kept = [(s, loc[fraud_pos[loc] >= 0]) for s, loc in w.incident_labels]
    w.incident_labels = [k for k in kept if len(k[1])]
    legit_pos = where[:n_legit][where[:n_legit] >= 0]
    labels, stats = w.make_labels(tx, fraud_pos, legit_pos)

    # Fraud that was discovered gets its entities listed, after the report.
    first_seen = {}
    for scenario, reported in w.reports:
        first_seen[scenario] = min(first_seen.get(scenario, reported), reported)
    rng = w.rngs["blacklist"]
    for kind, value, t, reason in w.blacklist_later:
        if rng.random() < 0.7:
            listed = int(t) + int(rng.integers(5, 40)) * DAY + int(rng.integers(0, DAY))
            w.blacklist.add(entity_type=kind, entity_value=value, listed_at=listed,
                            delisted_at=None, source="internal", reason=reason)

    ev = pd.concat([events, w.fraud_events.frame(list(events.columns))], ignore_index=True)
    ev["ts"] = ev["ts"].astype(np.int64)
    ev = ev.sort_values("ts", kind="stable").reset_index(drop=True)
    ev.insert(0, "event_id", _ids("E", np.arange(len(ev)), 9))

    bl = w.blacklist.frame(["entity_type", "entity_value", "listed_at", "delisted_at",
                            "source", "reason"])
    bl = bl.sort_values(["listed_at", "entity_type", "entity_value"], kind="stable")
    bl = bl.drop_duplicates(["entity_type", "entity_value", "listed_at"]).reset_index(drop=True)

    accounts = pd.DataFrame({
        "account_id": _ids("A", np.arange(config.accounts), 7), "created_at": w.created,
        "home_lat": w.home_lat, "home_lon": w.home_lon, "kyc_level": w.kyc,
    })
    extra = w.extra_accounts.frame(list(accounts.columns))
    accounts = pd.concat([accounts, extra], ignore_index=True) if len(extra) else accounts
    accounts["created_at"] = accounts["created_at"].astype(np.int64)

    world = SimulatedWorld(
        transactions=_canonical(tx, "transactions"),
        labels=_canonical(labels, "labels"),
        events=_canonical(ev, "events"),
        blacklist=_canonical(bl, "blacklist"),
        accounts=_canonical(accounts, "accounts"),
    )
    world.manifest = {
        "generator": "fraudlab.features.simulate_world",
        "config": config.model_dump(mode="json"),
        "period": {"history_from": _iso(w.t_hist), "start": _iso(w.t0), "end": _iso(w.t1),
                   "emerging_from": _iso(w.t_emerging)},
        "rows": {name: len(df) for name, df in world.tables().items()},
        "fraud": {
            "transactions_by_type": stats["fraud_transactions"],
            "labelled_by_type": stats["labelled_fraud"],
            "never_labelled": stats["unlabelled_fraud"],
            "noisy_reports_on_legit": stats["noisy_reports"],
            "wrong_report_tx_ids": stats["wrong_report_tx_ids"],
            "cleared_reviews_on_legit": stats["cleared_reviews"],
            "first_report_by_type": {k: _iso(v) for k, v in sorted(first_seen.items())},
            "fraud_rate": round(
                sum(stats["fraud_transactions"].values()) / max(1, len(world.transactions)), 6),
        },
    }
    return world


def _iso(seconds: int) -> str:
    return pd.Timestamp(int(seconds), unit="s", tz="UTC").isoformat()
