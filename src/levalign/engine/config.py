"""``levalign copy CONFIG.toml``: the copier's configuration file (docs/live.md, "Configuration").

A TOML file with sections ``[lead]``, ``[venue]``, ``[store]``, ``[engine]`` and either
``[[followers]]`` tables or ``followers_file`` (CSV or Parquet, one follower a row, the same
fields as columns). Every key is checked: an unknown key is refused with the closest valid
name, a bad value with its TOML key path (``followers[3].max_slippage``) and what to change.
Credentials are references (``env:NAME``, ``file:PATH#NAME``), never keys
(:mod:`levalign.engine.credentials`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from levalign.engine.credentials import check_reference
from levalign.errors import ConfigurationError, InvalidInput
from levalign.schemas import FollowerProfile, unknown_key_message

__all__ = [
    "CopyConfig",
    "EngineSection",
    "FollowerConfig",
    "LeadSection",
    "StoreSection",
    "VenueSection",
    "load_config",
]

_ADDRESS_HEX = frozenset("0123456789abcdefABCDEF")


def _address(value: str) -> str:
    if not (len(value) == 42 and value.startswith("0x") and set(value[2:]) <= _ADDRESS_HEX):
        raise ValueError("must be 0x followed by 40 hex digits")
    return value.lower()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LeadSection(_Section):
    """``[lead]``: whose fills to copy."""

    source: Literal["hyperliquid"] = "hyperliquid"
    address: str

    _check_address = field_validator("address")(_address)


class VenueSection(_Section):
    """``[venue]``: where follower orders go."""

    name: Literal["hyperliquid"] = "hyperliquid"
    base_url: str = "https://api.hyperliquid.xyz"
    timeout: float = Field(default=10.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class StoreSection(_Section):
    """``[store]``: the database; default a SQLite file next to the configuration."""

    url: str | None = None


class EngineSection(_Section):
    """``[engine]``: how the copier runs.

    Attributes
    ----------
    slippage
        Default ``max_slippage`` of followers that set none: the cap of an open's IOC price
        from the lead's fill price, as a fraction.
    reconcile_seconds
        Seconds between reconciliations of follower positions against the venue.
    drift_band
        Relative position difference that reconciliation tolerates.
    fills_poll_seconds
        Seconds between polls of follower fills while orders await theirs.
    send_expiry_seconds
        How long after its claim an order may still be accepted by the venue; an order sent
        after it is refused (``Action expired``), and an order lost to a crash between claim
        and send is resent only after it.
    dispatch_batch
        Orders claimed at once; all must be sent within ``send_expiry_seconds``.
    ip_weight_per_minute
        The REST weight budget of this IP (Hyperliquid: 1,200 a minute); raise it only for
        a server without that limit (the sandbox).
    worker
        The dispatcher's name in the store.
    """

    slippage: float = Field(default=0.005, ge=0, lt=1)
    reconcile_seconds: float = Field(default=60.0, gt=0)
    drift_band: float = Field(default=0.01, ge=0)
    fills_poll_seconds: float = Field(default=0.2, gt=0)
    send_expiry_seconds: float = Field(default=10.0, gt=0)
    dispatch_batch: int = Field(default=16, ge=1, le=1000)
    ip_weight_per_minute: float = Field(default=1200.0, gt=0)
    worker: str = "copier"


_GUARD_FIELDS = (
    "max_slippage",
    "max_notional_per_symbol",
    "daily_loss_limit",
    "equity_stop",
    "copy_existing_positions",
    "paused",
    "unfollow",
)
_STATE_FIELDS = frozenset(
    {"position", "entry_price", "collateral", "residual", "available_balance"}
)
PROFILE_FIELDS = tuple(
    n for n in FollowerProfile.model_fields if n not in _STATE_FIELDS and n not in ("id",)
)


class FollowerConfig(_Section):
    """One ``[[followers]]`` table: account, credentials reference, profile and guards.

    The profile is every :class:`levalign.schemas.FollowerProfile` field but the state
    (position, entry, collateral, residual), which the store keeps. Guards:

    ``max_slippage``
        Opens go as IOC at most this far from the lead's fill price; when the market already
        moved further, the open is skipped with a reason. Closes always go.
    ``max_notional_per_symbol``
        ``{symbol: USDC}``: the largest position notional per market.
    ``daily_loss_limit``
        USDC lost since the day's start (UTC) at which every position is closed and copying
        stops.
    ``equity_stop``
        Equity (USDC) below which every position is closed and copying stops.
    ``copy_existing_positions``
        Copy the positions the lead holds at start, sized as opens at the current price.
    ``paused``
        Start paused: no new copies (closes of the lead still go).
    ``unfollow``
        When the follower leaves the configuration: ``close`` its positions or ``keep`` them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    id: str = Field(min_length=1, max_length=128)
    address: str
    credentials: str
    equity: float = Field(gt=0, allow_inf_nan=False)
    profile: dict[str, Any] = Field(default_factory=dict)
    max_slippage: float | None = Field(default=None, ge=0, lt=1)
    max_notional_per_symbol: dict[str, float] = Field(default_factory=dict)
    daily_loss_limit: float | None = Field(default=None, gt=0)
    equity_stop: float | None = Field(default=None, ge=0)
    copy_existing_positions: bool = False
    paused: bool = False
    unfollow: Literal["close", "keep"] = "close"

    _check_address = field_validator("address")(_address)


class CopyConfig(_Section):
    """The whole configuration (``levalign copy CONFIG.toml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    lead: LeadSection
    venue: VenueSection = VenueSection()
    store: StoreSection = StoreSection()
    engine: EngineSection = EngineSection()
    followers: tuple[FollowerConfig, ...]
    path: Path | None = None

    @property
    def base_dir(self) -> Path:
        """The configuration's folder (relative paths are read from it)."""
        return self.path.parent if self.path is not None else Path.cwd()

    @property
    def store_url(self) -> str:
        """``[store] url``, or ``sqlite:///<config name>.db`` beside the configuration."""
        if self.store.url:
            return self.store.url
        stem = self.path.stem if self.path is not None else "levalign"
        return f"sqlite:///{self.base_dir / (stem + '.db')}"

    def slippage(self, follower: FollowerConfig) -> float:
        """The follower's slippage cap, or the engine default."""
        return self.engine.slippage if follower.max_slippage is None else follower.max_slippage


_SECTIONS: dict[str, type[BaseModel]] = {
    "lead": LeadSection,
    "venue": VenueSection,
    "store": StoreSection,
    "engine": EngineSection,
}
_TOP = ("lead", "venue", "store", "engine", "followers", "followers_file")
_FOLLOWER_KEYS = ("id", "address", "credentials", "equity", *_GUARD_FIELDS)
_FOLLOWER_VALID = sorted({*_FOLLOWER_KEYS, *PROFILE_FIELDS})


def _unknown(key: str, valid: list[str] | tuple[str, ...], where: str) -> ConfigurationError:
    path = f"{where}.{key}" if where else key
    message = unknown_key_message(key, list(valid), noun="key")
    return ConfigurationError(f"{message} (at {path} in the configuration)", field=path)


def _validation(err: ValidationError, where: str) -> ConfigurationError:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    path = f"{where}.{loc}" if where and loc else (where or loc)
    msg = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "missing":
        return ConfigurationError(f"{path} is missing: add it to the configuration", field=path)
    return ConfigurationError(f"{path}: {msg}; change it in the configuration", field=path)


def _follower(raw: dict[str, Any], where: str) -> FollowerConfig:
    for key in raw:
        if key not in _FOLLOWER_VALID:
            raise _unknown(str(key), _FOLLOWER_VALID, where)
    if "credentials" in raw:
        try:
            check_reference(str(raw["credentials"]), f"{where}.credentials")
        except InvalidInput as exc:
            raise ConfigurationError(exc.message, field=exc.field) from None
    profile = {k: v for k, v in raw.items() if k in PROFILE_FIELDS and k != "equity"}
    fixed = {k: v for k, v in raw.items() if k in _FOLLOWER_KEYS}
    caps = fixed.get("max_notional_per_symbol")
    if isinstance(caps, str):  # a followers file carries it as JSON text
        try:
            fixed["max_notional_per_symbol"] = json.loads(caps) if caps.strip() else {}
        except json.JSONDecodeError:
            raise ConfigurationError(
                f"{where}.max_notional_per_symbol must be a table {{symbol = USDC}} (JSON "
                'text in a file: {"BTC/USDC:USDC": 5000})',
                field=f"{where}.max_notional_per_symbol",
            ) from None
    try:
        FollowerProfile.model_validate({"id": str(raw.get("id", "x")), "equity": 1.0, **profile})
        return FollowerConfig.model_validate({**fixed, "profile": profile})
    except ValidationError as exc:
        raise _validation(exc, where) from None


def _followers_file(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        elif path.suffix.lower() == ".csv":
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(path)
        else:
            raise ConfigurationError(
                f"followers_file {str(path)!r} must end in .csv or .parquet",
                field="followers_file",
            )
    except OSError as exc:
        raise ConfigurationError(
            f"followers_file {str(path)!r} cannot be read ({exc}); fix the path",
            field="followers_file",
        ) from None
    rows = table.to_pylist()
    return [
        {
            k: v
            for k, v in row.items()
            if v is not None and not (isinstance(v, float) and math.isnan(v))
        }
        for row in rows
    ]


def _section(data: dict[str, Any], name: str, model: type[BaseModel]) -> BaseModel:
    raw = data.get(name, {})
    if not isinstance(raw, dict):
        raise ConfigurationError(f"[{name}] must be a table", field=name)
    for key in raw:
        if key not in model.model_fields:
            raise _unknown(str(key), tuple(model.model_fields), name)
    if name == "lead" and name not in data:
        raise ConfigurationError(
            "[lead] is missing: add a [lead] table with the lead's address", field="lead"
        )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise _validation(exc, name) from None


def parse_config(data: dict[str, Any], path: Path | None = None) -> CopyConfig:
    """Check a parsed TOML document and build the configuration (see the module).

    Raises
    ------
    ConfigurationError
        An unknown key (with the closest valid one), a missing or bad value (with its key
        path), no followers, or two followers with one id.
    """
    for key in data:
        if key not in _TOP:
            raise _unknown(str(key), _TOP, "")
    sections = {name: _section(data, name, model) for name, model in _SECTIONS.items()}
    if ("followers" in data) == ("followers_file" in data):
        raise ConfigurationError(
            "give the followers either as [[followers]] tables or as followers_file = "
            '"followers.csv" (exactly one of the two)',
            field="followers",
        )
    if "followers_file" in data:
        file = Path(str(data["followers_file"]))
        base = path.parent if path is not None else Path.cwd()
        rows = _followers_file(file if file.is_absolute() else base / file)
        label = "followers_file row"
    else:
        rows = data["followers"]
        label = "followers"
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ConfigurationError("followers must be [[followers]] tables", field="followers")
    followers = tuple(_follower(row, f"{label}[{i}]") for i, row in enumerate(rows))
    if not followers:
        raise ConfigurationError("no followers: add [[followers]] tables", field="followers")
    seen: set[str] = set()
    for i, f in enumerate(followers):
        if f.id in seen:
            raise ConfigurationError(
                f"{label}[{i}].id {f.id!r} is used twice: follower ids must be unique",
                field=f"{label}[{i}].id",
            )
        seen.add(f.id)
    return CopyConfig.model_validate({**sections, "followers": followers, "path": path})


def load_config(path: Path) -> CopyConfig:
    """Read and check ``levalign copy``'s TOML configuration.

    Raises
    ------
    ConfigurationError
        The file is missing, is not TOML (with line and column), or does not check (see
        :func:`parse_config`).
    """
    import tomllib

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read configuration {str(path)!r} ({exc.strerror}); check the path",
            field="config",
        ) from None
    except UnicodeDecodeError:
        raise ConfigurationError(
            f"configuration {str(path)!r} is not UTF-8 text", field="config"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(
            f"configuration {str(path)!r} is not valid TOML: {exc}", field="config"
        ) from None
    return parse_config(data, path.resolve())
