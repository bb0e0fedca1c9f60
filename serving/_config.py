"""Configuration of the risk service (the ``serving`` section of a fraudlab config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fraudlab.data_contracts import parse_duration


class ServingConfig(BaseModel):
    """``fraudlab serve``: where it listens, where its state lives, how long records stay."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Interface to bind; loopback unless told "
                      "otherwise.")
    port: int = Field(8000, ge=1, le=65535)
    state: str = Field("state/serving", description="State directory: write-ahead log, "
                       "snapshot and the day-partitioned decision log.")
    retention: str = Field("1826d", description="Decision records younger than this are "
                           "never purged (default 5 years).")
    token_env: str | None = Field(None, description="Environment variable holding a bearer "
                                  "token the write endpoints require; none: open on loopback.")
    fsync: bool = Field(True, description="Fsync the logs before answering: an answered "
                        "payment or event survives a crash.")
    max_body_bytes: int = Field(1_000_000, ge=1_000)
    max_rows: int = Field(10_000, ge=1, description="Most rows in one list request.")
    max_future: str = Field("5min", description="How far past the service's clock a row's "
                            "time may be.")
    reload_every: float = Field(60.0, ge=0, description="Seconds between checks of the "
                                "served alias; when it moves, the new version takes over "
                                "without a dropped request (0: never).")
    redis_prefix: str = Field("fraudlab:serving", description="With --state redis://...: "
                              "key prefix of the shared state (the registered model's name "
                              "is added).")
    lock_timeout: float = Field(10.0, gt=0, description="With --state redis://...: seconds "
                                "a request waits for the shared state's lock (then 503), and "
                                "how long a lock left by a killed replica lasts.")
    snapshot_every: int = Field(100_000, ge=0, description="Rows accepted between two "
                                "snapshots of the state: a restart replays the rows since "
                                "the last one completed, about this many (0: snapshots only "
                                "after warming and at shutdown).")
    snapshot_in_background: bool = Field(True, description="Write periodic snapshots from "
                                         "a forked child while requests go on (where the "
                                         "platform forks); false: the request that reaches "
                                         "the count waits for the snapshot.")
    dedup_window: str = Field("7d", description="A tx_id scored within this much payment "
                              "time is refused as a duplicate (409).")

    _check = field_validator("retention", "max_future", "dedup_window")(
        lambda v: (parse_duration(v), v)[1])
