"""Request and result models shared by the Python API, the CLI and (later) the HTTP API.

Field names are ccxt's unified names in snake_case; ccxt's camelCase is accepted on input, so
``exchange.fetch_positions()`` output can be passed straight in.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from levalign._layout import BY_NAME
from levalign.errors import InvalidInput

__all__ = [
    "Account",
    "AccountReport",
    "AlignSpec",
    "DeriskRequest",
    "FollowerProfile",
    "LeadEvent",
    "NormalizeRequest",
    "Position",
    "PositionReport",
    "SimulateSpec",
    "parse",
]

Side = Literal["long", "short"]
MarginMode = Literal["isolated", "cross"]
SizingMode = Literal[
    "proportional", "fixed_notional", "target_leverage", "risk_constant", "vol_target", "optimal"
]
DeriskAction = Literal["reduce", "add_margin"]
MinSizePolicy = Literal["skip", "round_up", "accumulate"]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=True,  # checked per field below, to name the field in the error
    )


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value}")
    return value


def _positive(value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"must be a positive finite number, got {value}")
    return value


def _non_negative(value: float) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"must be a non-negative finite number, got {value}")
    return value


Finite = Annotated[float, AfterValidator(_finite)]
Positive = Annotated[float, AfterValidator(_positive)]
NonNegative = Annotated[float, AfterValidator(_non_negative)]


class Position(_Model):
    """An open position, as ccxt's ``fetch_positions`` reports it.

    ``contracts`` is positive with ``side``; a signed ``contracts`` without ``side`` is also
    accepted (negative is short). ``collateral`` is the isolated margin.
    """

    model_config = ConfigDict(extra="ignore")  # ccxt positions carry many more fields

    symbol: str
    side: Side | None = None
    contracts: Finite
    entry_price: Positive
    mark_price: Positive
    margin_mode: MarginMode = "cross"
    collateral: NonNegative | None = None
    leverage: Positive | None = None
    hedged: bool = False

    @model_validator(mode="after")
    def _check(self) -> Position:
        if self.side is None:
            if self.contracts == 0:
                raise ValueError("contracts is 0: leave closed positions out")
            object.__setattr__(self, "side", "long" if self.contracts > 0 else "short")
            object.__setattr__(self, "contracts", abs(self.contracts))
        elif self.contracts <= 0:
            raise ValueError(f"contracts must be positive when side is given, got {self.contracts}")
        if self.margin_mode == "isolated" and self.collateral is None:
            raise ValueError("an isolated position needs its collateral (isolated margin)")
        return self

    @property
    def sign(self) -> float:
        """+1 for long, −1 for short."""
        return 1.0 if self.side == "long" else -1.0


class Account(_Model):
    """One trading account: ``levalign margin ACCOUNT.json`` reads this."""

    model_config = ConfigDict(extra="forbid")

    exchange: str = "binance"
    markets: str | None = None
    tiers: str | None = None
    wallet_balance: Finite = Field(
        validation_alias=AliasChoices("wallet_balance", "walletBalance", "balance")
    )
    position_mode: Literal["one_way", "hedge"] = "one_way"
    positions: list[Position] = Field(default_factory=list)


class PositionReport(_Model):
    """Margin figures of one position (all amounts in the settle currency)."""

    symbol: str
    side: Side
    contracts: float
    notional: float
    initial_margin: float
    maintenance_margin: float
    unrealized_pnl: float
    liquidation_price: float | None
    liquidation_distance: float | None
    effective_leverage: float
    margin_mode: MarginMode
    leverage: float


class AccountReport(_Model):
    """Margin figures of an account: ``levalign margin`` prints this."""

    exchange: str
    settle: str
    wallet_balance: float
    equity: float
    initial_margin: float
    maintenance_margin: float
    effective_leverage: float
    margin_ratio: float
    positions: list[PositionReport]


class LeadEvent(_Model):
    """A change in the lead trader's position (docs/design.md, "Normalization").

    Positions are signed contracts of the lead's market. ``sigma`` (annualized volatility of
    the symbol) feeds ``vol_target``, ``risk_constant`` and ``optimal`` sizing and the default
    liquidation curve of ``max_liq_probability``; ``expected_return`` (annualized drift of the
    price, funding included) feeds ``optimal`` and that curve's drift.
    """

    event_id: str
    timestamp: float | str | None = None
    symbol: str
    price: Positive
    lead_equity: Positive
    lead_position_before: Finite
    lead_position_after: Finite
    lead_stop_price: Positive | None = None
    lead_collateral_before: NonNegative | None = None
    lead_collateral_after: NonNegative | None = None
    lead_leverage_setting: Positive | None = None
    lead_total_notional: NonNegative | None = None
    sigma: Positive | None = None
    expected_return: Finite | None = None

    @model_validator(mode="after")
    def _check(self) -> LeadEvent:
        if self.lead_stop_price is not None and self.lead_position_after != 0:
            long = self.lead_position_after > 0
            if (long and self.lead_stop_price >= self.price) or (
                not long and self.lead_stop_price <= self.price
            ):
                side = "below" if long else "above"
                raise ValueError(
                    f"lead_stop_price {self.lead_stop_price} must be {side} price {self.price} "
                    f"for a {'long' if long else 'short'} position"
                )
        return self


def _column_default(name: str) -> Any:
    """The schema default of follower column ``name``, from the one registry of defaults.

    :data:`levalign._layout.COLUMNS` defines every follower column's default once; the schema
    states it as is, or as None where it is NaN or infinite (JSON has neither): None and an
    absent field both mean the column's default (its meaning in the registry).
    """
    default = BY_NAME[name].default
    if isinstance(default, float) and not math.isfinite(default):
        return None
    return default


class FollowerProfile(_Model):
    """One cohort row given as JSON (small requests); large cohorts come as Arrow tables.

    Every default is the cohort column's (:data:`levalign._layout.COLUMNS`, the README's
    cohort table): a profile sized as given, or after a round trip through
    ``model_validate`` and ``model_dump`` (Python or JSON mode), gets the same order. A field
    whose default is NaN or infinite (``min_liq_distance``: the lead's liquidation distance;
    ``max_notional``: no cap) is None here, and None means that default.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=True)

    id: str | int
    equity: float
    available_balance: float | None = _column_default("available_balance")
    position: float = _column_default("position")
    entry_price: float | None = _column_default("entry_price")
    collateral: float = _column_default("collateral")
    other_notional: float = _column_default("other_notional")
    other_maintenance_margin: float = _column_default("other_maintenance_margin")
    mode: SizingMode = _column_default("mode")
    scale: float = _column_default("scale")
    fixed_notional: float | None = _column_default("fixed_notional")
    risk_fraction: float | None = _column_default("risk_fraction")
    vol_target: float | None = _column_default("vol_target")
    sigma: float | None = _column_default("sigma")
    stop_sigmas: float = _column_default("stop_sigmas")
    max_leverage: float | None = _column_default("max_leverage")
    max_position_leverage: float | None = _column_default("max_position_leverage")
    min_liq_distance: float | None = _column_default("min_liq_distance")
    max_liq_probability: float | None = _column_default("max_liq_probability")
    horizon_hours: float = _column_default("horizon_hours")
    max_notional: float | None = _column_default("max_notional")
    expected_return: float | None = _column_default("expected_return")
    leverage_setting: float | None = _column_default("leverage_setting")
    margin_mode: MarginMode = _column_default("margin_mode")
    min_size_policy: MinSizePolicy = _column_default("min_size_policy")
    residual: float = _column_default("residual")
    allowed: bool = _column_default("allowed")
    derisk_distance: float | None = _column_default("derisk_distance")
    derisk: DeriskAction = _column_default("derisk")


class _CohortRequest(_Model):
    """The venue and the followers, shared by the requests of ``normalize`` and ``derisk``."""

    exchange: str = "binance"
    markets: str | None = None
    tiers: str | None = None
    symbol_map: dict[str, str] | None = None
    followers: list[FollowerProfile] | None = None


class NormalizeRequest(_CohortRequest):
    """``levalign normalize REQUEST.json`` reads this."""

    lead_exchange: str | None = None
    event: LeadEvent


class DeriskRequest(_CohortRequest):
    """``levalign derisk REQUEST.json`` reads this: the followers' state at ``price``."""

    symbol: str
    price: Positive


M = TypeVar("M", bound=BaseModel)


class _RiskSpec(_Model):
    """Fields shared by ``levalign simulate`` and ``levalign align`` specs."""

    model: dict[str, Any]
    horizon_days: Positive = 1.0
    paths: int = Field(default=100_000, ge=2)
    steps: int = Field(default=96, ge=1)
    seed: int = Field(default=0, ge=0)
    funding_rate: Finite = 0.0


class SimulateSpec(_RiskSpec):
    """``levalign simulate SPEC.json``: a price model against one position or an account.

    ``model`` is ``{"type": "gbm" | "student_t" | "garch_t" | "jump" | "bootstrap", ...}`` with
    annualized σ and μ (:func:`levalign.risk.monte_carlo.model_from_spec`). Give ``side`` and
    ``liquidation_price`` for one position, or ``account`` (the ``levalign margin`` form).
    """

    spot: Positive | None = None
    side: Side | None = None
    liquidation_price: Positive | None = None
    account: dict[str, Any] | None = None
    var_level: float = Field(default=0.99, gt=0.5, lt=1.0)


class AlignSpec(_RiskSpec):
    """``levalign align SPEC.json``: the optimal leverage for a follower's limits."""

    spot: Positive
    side: Side = "long"
    exchange: str = "binance"
    symbol: str
    markets: str | None = None
    tiers: str | None = None
    equity: Positive
    max_liq_probability: float = Field(default=0.01, gt=0.0, le=1.0)
    max_es: float | None = Field(default=None, gt=0.0, le=1.0)
    es_level: float = Field(default=0.99, ge=0.5, lt=1.0)
    max_leverage: Positive | None = None
    grid_points: int = Field(default=256, ge=3)


def parse(model: type[M], data: Any, *, root: str = "") -> M:
    """Validate ``data`` as ``model``; on failure raise :class:`InvalidInput` naming the field.

    Raises
    ------
    InvalidInput
        With ``field`` set to the dotted path of the first bad field (``event.price``).
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(
            f"[{p}]" if isinstance(p, int) else str(p)
            for p in ((root,) if root else ()) + tuple(err["loc"])
        ).replace(".[", "[")
        msg = str(err["msg"]).removeprefix("Value error, ")
        where = loc or root or model.__name__
        bad = err.get("input")
        scalar = not isinstance(bad, dict | list)
        shown = (
            f" (got {bad!r})" if err["type"] != "missing" and scalar and "got" not in msg else ""
        )
        raise InvalidInput(
            f"{where}: {msg}{shown}",
            field=where,
            value=bad if scalar else None,
        ) from None
