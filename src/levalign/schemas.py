"""Request and result models shared by the Python API, the CLI and (later) the HTTP API.

Field names are ccxt's unified names in snake_case; ccxt's camelCase is accepted on input, so
``exchange.fetch_positions()`` output can be passed straight in.
"""

from __future__ import annotations

import difflib
import math
import re
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel, to_snake
from pydantic_core import PydanticCustomError

from levalign._layout import BY_NAME
from levalign.errors import InvalidInput

__all__ = [
    "CCXT_POSITION_KEYS",
    "CCXT_POSITION_KEYS_ANY_CASE",
    "MAX_PATHS",
    "MAX_PATH_STEPS",
    "MIN_PATHS",
    "Account",
    "AccountReport",
    "AlignSpec",
    "DeriskRequest",
    "FollowerProfile",
    "LeadEvent",
    "NormalizeRequest",
    "Position",
    "PositionReport",
    "Schema",
    "SimulateSpec",
    "parse",
    "unknown_key_message",
]

Side = Literal["long", "short"]
MarginMode = Literal["isolated", "cross"]
SizingMode = Literal[
    "proportional", "fixed_notional", "target_leverage", "risk_constant", "vol_target", "optimal"
]
DeriskAction = Literal["reduce", "add_margin"]
MinSizePolicy = Literal["skip", "round_up", "accumulate"]


class Schema(BaseModel):
    """Base of every request model: ccxt's camelCase accepted, unknown keys refused.

    One policy for unknown keys everywhere: a key that is neither a field (snake_case or
    camelCase) nor in :attr:`accepted_extra_keys` is refused with the closest valid name
    (``levrage``: "did you mean 'leverage'?"). A model that takes another system's records
    as they come (ccxt's positions) lists that system's keys in ``accepted_extra_keys``; they
    are accepted and ignored.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=True,  # checked per field below, to name the field in the error
    )

    accepted_extra_keys: ClassVar[frozenset[str]] = frozenset()
    """Keys that are not fields but are accepted and ignored (another system's record)."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = _known_keys(cls)
            for key in data:
                if not isinstance(key, str) or (
                    key not in known and key not in cls.accepted_extra_keys
                ):
                    message = unknown_key_message(str(key), sorted(cls.model_fields))
                    raise PydanticCustomError(
                        "unknown_field", "{message}", {"key": str(key), "message": message}
                    )
        return data


@cache
def _known_keys(model: type[BaseModel]) -> frozenset[str]:
    """Every key that names a field of ``model``: its name, alias and validation aliases."""
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        keys |= {name, to_camel(name)}
        if info.alias:
            keys.add(info.alias)
        if isinstance(info.validation_alias, str):
            keys.add(info.validation_alias)
        elif isinstance(info.validation_alias, AliasChoices):
            keys |= {c for c in info.validation_alias.choices if isinstance(c, str)}
    return frozenset(keys)


def unknown_key_message(key: str, valid: list[str], *, noun: str = "field") -> str:
    """``unknown field 'levrage': did you mean 'leverage'?`` (or the list of valid names)."""
    close = difflib.get_close_matches(to_snake(key), valid, n=1, cutoff=0.6)
    if close:
        return f"unknown {noun} {key!r}: did you mean {close[0]!r}?"
    return f"unknown {noun} {key!r}; valid: {', '.join(valid)}"


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


def _check_notional(name: str, contracts: float, price: float) -> None:
    """Refuse a position whose notional (contracts x price) is not a finite number."""
    if not math.isfinite(contracts * price * MAX_CONTRACT_SIZE):
        raise _field_error(
            name,
            f"{contracts:g} contracts at price {price:g} have no finite notional: no market "
            "holds such a position; check the units (contracts, not a raw integer amount)",
        )


def _field_error(key: str, message: str) -> PydanticCustomError:
    """An error a model validator raises about one of its fields: ``parse`` names that field."""
    return PydanticCustomError("field_error", "{message}", {"key": key, "message": message})


MAX_CONTRACT_SIZE = 1e6
"""Largest contract size allowed for in the notional check (no listed market comes close)."""

Finite = Annotated[float, AfterValidator(_finite)]
Positive = Annotated[float, AfterValidator(_positive)]
NonNegative = Annotated[float, AfterValidator(_non_negative)]


CCXT_POSITION_KEYS = frozenset(
    {
        "info", "id", "symbol", "timestamp", "datetime", "lastUpdateTimestamp", "side",
        "contracts", "contractSize", "notional", "leverage", "unrealizedPnl", "realizedPnl",
        "collateral", "entryPrice", "markPrice", "lastPrice", "liquidationPrice", "marginMode",
        "marginType", "hedged", "maintenanceMargin", "maintenanceMarginPercentage",
        "initialMargin", "initialMarginPercentage", "marginRatio", "stopLossPrice",
        "takeProfitPrice", "percentage", "isolated", "exitPrice",
    }
)  # fmt: skip
"""Keys of ccxt's unified position structure (``fetch_positions``), camelCase as ccxt sends
them; a model reading positions accepts these (and their snake_case) besides its fields."""

CCXT_POSITION_KEYS_ANY_CASE = CCXT_POSITION_KEYS | {to_snake(k) for k in CCXT_POSITION_KEYS}


class Position(Schema):
    """An open position, as ccxt's ``fetch_positions`` reports it.

    ``contracts`` is positive with ``side``; a signed ``contracts`` without ``side`` is also
    accepted (negative is short). The margin of an isolated position is read as ccxt defines
    its unified fields: ``position_margin`` is the margin held in the position, unrealized PnL
    excluded (the margin at the entry price, which the liquidation formulas take);
    ``collateral`` is that margin plus the unrealized PnL at the mark (``unrealized_pnl`` when
    given, else computed). An isolated position needs one of the two, or a venue ``info``
    payload that states it (:meth:`levalign.margin.TieredMarginModel.position_margin`).
    Other ccxt fields (``CCXT_POSITION_KEYS``) and ``info`` are accepted; an unknown key is
    refused, naming the closest valid one.
    """

    # ccxt positions carry many more keys: those are accepted and ignored, any other refused
    model_config = ConfigDict(extra="ignore")
    accepted_extra_keys = CCXT_POSITION_KEYS_ANY_CASE

    symbol: str
    side: Side | None = None
    contracts: Finite
    entry_price: Positive
    mark_price: Positive
    margin_mode: MarginMode = Field(
        default="cross",
        validation_alias=AliasChoices("margin_mode", "marginMode", "marginType"),
    )
    position_margin: NonNegative | None = None
    collateral: Finite | None = None
    unrealized_pnl: Finite | None = None
    leverage: Positive | None = None
    hedged: bool | None = None
    info: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> Position:
        if self.side is None:
            if self.contracts == 0:
                raise ValueError("contracts is 0: leave closed positions out")
            object.__setattr__(self, "side", "long" if self.contracts > 0 else "short")
            object.__setattr__(self, "contracts", abs(self.contracts))
        elif self.contracts <= 0:
            raise ValueError(f"contracts must be positive when side is given, got {self.contracts}")
        if (
            self.margin_mode == "isolated"
            and self.position_margin is None
            and self.collateral is None
            and not self.info
        ):
            raise ValueError(
                "an isolated position needs its margin: position_margin (margin held, PnL "
                "excluded) or collateral (margin plus unrealized PnL, as ccxt reports it)"
            )
        _check_notional("contracts", self.contracts, max(self.entry_price, self.mark_price))
        return self

    @property
    def sign(self) -> float:
        """+1 for long, −1 for short."""
        return 1.0 if self.side == "long" else -1.0


class Account(Schema):
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


class PositionReport(Schema):
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


class AccountReport(Schema):
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


class LeadEvent(Schema):
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
        for name in ("lead_position_before", "lead_position_after"):
            _check_notional(name, getattr(self, name), self.price)
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


class FollowerProfile(Schema):
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


class _CohortRequest(Schema):
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


MIN_PATHS = 1_000
"""Fewest Monte Carlo paths a ``simulate`` or ``align`` request may ask for: below it the
standard errors are themselves too noisy to mean anything (at 1,000 paths a 1% probability
of liquidation is known to +-0.3%; two paths give a standard error of 0)."""

MAX_PATHS = 2_000_000
"""Most Monte Carlo paths one run may ask for (a 1% probability is then known to +-0.007%);
the per-path outcomes alone take 32 bytes a path."""

MAX_PATH_STEPS = 1_000_000_000
"""Most paths x steps one run may ask for: one billion path-steps (the README's "Benchmarks"
gives the rate at which they run)."""


class _RiskSpec(Schema):
    """Fields shared by ``levalign simulate`` and ``levalign align`` specs."""

    model: dict[str, Any]
    horizon_days: Positive = 1.0
    paths: int = Field(default=100_000, ge=MIN_PATHS, le=MAX_PATHS)
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

    The field is named as the caller wrote it (``event.lead_equity`` or ``event.leadEquity``,
    whichever the input used; a missing field by its snake_case name).

    Raises
    ------
    InvalidInput
        With ``field`` set to the dotted path of the first bad field (``event.price``).
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        keyed = err["type"] in ("unknown_field", "field_error")
        if keyed:
            loc = (*loc, err["ctx"]["key"])
        parts = _user_path(data, loc)
        where = ".".join(
            f"[{p}]" if isinstance(p, int) else str(p) for p in ((root,) if root else ()) + parts
        ).replace(".[", "[")
        where = where or root or model.__name__
        msg = _readable(err)
        bad = err.get("input")
        if keyed and isinstance(bad, dict):
            bad = bad.get(err["ctx"]["key"])
        scalar = not isinstance(bad, dict | list)
        shown = (
            f" (got {bad!r})"
            if err["type"] not in ("missing", "unknown_field", "field_error")
            and scalar
            and "got" not in msg
            else ""
        )
        raise InvalidInput(
            f"{where}: {msg}{shown}",
            field=where,
            value=bad if scalar else None,
        ) from None


_MESSAGES = {
    "missing": "is required: add it",
    "dict_type": "must be a JSON object",
    "list_type": "must be a JSON list",
}


def _readable(err: Any) -> str:
    """Pydantic's message, in the words of a person fixing a JSON file."""
    if err["type"] in _MESSAGES:
        return _MESSAGES[err["type"]]
    bounds = {"greater_than_equal": ("ge", "at least"), "less_than_equal": ("le", "at most")}
    if err["type"] in bounds:
        key, words = bounds[err["type"]]
        return f"must be {words} {err['ctx'][key]:,}"
    return str(err["msg"]).removeprefix("Value error, ")


def _user_path(data: Any, loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    """``loc`` with each key spelled as in ``data``, without pydantic's internal steps.

    pydantic reports a field by its alias (``leadEquity``) whatever the input used, and adds
    the member of a union it tried (``id.str``) or a validator's tag: follow ``data`` and keep
    only the steps that exist in it, as the user wrote them; a missing key is named in
    snake_case.
    """
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str):
            spelled = next(
                (k for k in (part, to_snake(part), to_camel(part)) if k in node),
                None,
            )
            if spelled is None:
                out.append(to_snake(part) if re.search("[A-Z]", part) else part)
                break
            out.append(spelled)
            node = node[spelled]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        else:
            break  # a union member or validator tag below a leaf: not the user's
    return tuple(out)
