r"""Option positions: greeks-based exposure, and copying an options lead by delta.

See docs/design.md, "Risk" and "Normalization".

An option counts in leverage through its delta and in volatility risk through its vega. For a
position of :math:`q` contracts (signed: negative is short) of :math:`c` units of underlying
each, with underlying price :math:`S` (the forward :math:`F` for Black-76):

.. math::

    N_\Delta = \Delta\, q\, c\, S, \qquad
    \lambda_\Delta = \frac{\sum_i N_{\Delta,i}}{E}, \qquad
    \lambda_\Delta^{\text{gross}} = \frac{\sum_i |N_{\Delta,i}|}{E}, \qquad
    \frac{\mathcal V}{E} = \frac{\sum_i \mathcal V_i\, q_i\, c_i}{E}

:math:`N_\Delta` is the delta-adjusted notional (the notional of the underlying, or of the
future for Black-76, that has the same first-order P&L), :math:`E` the account equity in USD
(quote currency) and :math:`\mathcal V` the vega per 1.00 of volatility (0.01 of vol moves the
value by :math:`\mathcal V / 100`). Greeks come from :func:`levalign.risk.greeks.greeks`
(Hull, *Options, Futures, and Other Derivatives*, 9th ed., ch. 19 "The Greek Letters"); the
gamma exposure is the change of :math:`N_\Delta` for a 1 % rise of the underlying at a fixed
conversion price, :math:`\Gamma\, q\, c\, S^2 / 100` (USD per 1 %).

**Inverse (coin-settled, Deribit-style) options.** The option pays the Black–Scholes payoff
converted to coin at expiry, so its value in coin is :math:`C = c_{BS}(S)/S`, quoted in coin per
unit of underlying; the contract size is in coin (1 BTC on Deribit — unlike inverse *futures*,
whose contract size is in USD). Its delta in coin terms is the change of the coin value per
relative move of :math:`S` (Deribit's convention, the ``inverse`` model of ``greeks``):

.. math::

    \Delta_{\text{coin}} = S\,\frac{\partial C}{\partial S} = \Delta_{BS} - \frac{c_{BS}}{S},
    \qquad N_\Delta = \Delta_{\text{coin}}\, q\, c\, S \ \text{(USD)},
    \qquad \mathcal V_{\text{USD}} = S\,\frac{\partial C}{\partial \sigma} = \mathcal V_{BS}

A coin-margined inverse future of USD notional :math:`N` gains :math:`N\,x/S` coin on a relative
move :math:`x`; the option gains :math:`\Delta_{\text{coin}}\, q\, c\, x` coin, so
:math:`N_\Delta` is the notional of the inverse future with the same coin P&L, and
:math:`N_\Delta / E = \Delta_{\text{coin}}\, q\, c / E_{\text{coin}}` with
:math:`E = E_{\text{coin}} S`: leverage is the same whichever currency it is counted in.
Equity is always passed in USD; a coin-margined account passes its coin equity times
:math:`S`. The premium paid is part of :math:`\Delta_{\text{coin}}`: a long call bought with
coin carries less coin delta than its USD delta.

**Copying an options lead** (:func:`normalize_options`) keeps the lead's delta leverage ×
``scale`` for each follower, with the semantics of the futures cohort (docs/design.md,
"Normalization"): an increase of :math:`\Delta q_L` contracts gives the follower

.. math::

    \frac{\Delta\, \Delta q_F\, c\, S}{E_F}
      = \text{scale}\cdot\frac{\Delta\, \Delta q_L\, c\, S}{E_L}
    \iff \Delta q_F = \text{scale}\cdot \Delta q_L \, E_F / E_L

(the same contract, so the delta and the price cancel), then caps the follower's resulting
position so that its gross account delta leverage
:math:`(|N_\Delta| + \text{other\_delta\_notional}) / E_F \le` ``max_leverage``, the option's
own :math:`|N_\Delta| / E_F \le` ``max_position_leverage`` and its gross vega per unit of
equity :math:`(|\mathcal V q c| + \text{other\_vega}) / E_F \le` ``max_vega``. Gross sums are
used because deltas of different underlyings and vegas of different expiries do not offset;
a follower's hedges therefore never buy it room. Reductions are fractions of the follower's
own position, a lead close closes it exactly, a flip is a close plus an open.

Reason bits are :class:`levalign.normalize.Reason` where the meaning is the same:
``POSITION_LEVERAGE`` and ``ACCOUNT_LEVERAGE`` for the delta caps. The vega cap has no
equivalent there and sets :data:`VEGA_LIMIT` (``Reason.VEGA_LIMIT``, which only options
use); :func:`reason_names` names it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import AliasChoices, ConfigDict, Field, field_validator, model_validator

from levalign import _codes as codes
from levalign._codes import POLICIES, classify_change
from levalign._columns import check_columns, checked_ids, code_column, columns_of, float_column
from levalign.errors import InvalidInput
from levalign.risk.greeks import Greeks, greeks, implied_volatility
from levalign.schemas import CCXT_POSITION_KEYS_ANY_CASE, Finite, Positive, Schema, parse

__all__ = [
    "VEGA_LIMIT",
    "OptionCohort",
    "OptionContract",
    "OptionExposureReport",
    "OptionFollower",
    "OptionLeadEvent",
    "OptionNormalizeResult",
    "OptionPosition",
    "OptionPositionExposure",
    "normalize_options",
    "option_exposure",
    "reason_names",
]

Kind = Literal["call", "put"]
Model = Literal["black_scholes", "black76", "inverse"]
Side = Literal["long", "short"]

VEGA_LIMIT = codes.R_VEGA_LIMIT  # = levalign.normalize.Reason.VEGA_LIMIT
"""Reason bit: the follower's vega per unit of equity cap (``max_vega``) bound the order."""

_SECONDS_PER_YEAR = 365.0 * 86_400.0  # ACT/365, as Deribit quotes time to expiry
_MAX_YEARS = 1_000.0  # a larger numeric expiry is a timestamp given where years were expected
_EPS = 1e-9  # lot rounding tolerance, as in the futures kernel
_TIE = 1.0 - 1e-12  # a cap within this of the target is a tie, not a binding constraint
_SLACK = 1.0 + 1e-12  # tolerance of the round-up feasibility check


class _OptionModel(Schema):
    """Option schemas: the request-model conventions of :class:`levalign.schemas.Schema`."""


# --------------------------------------------------------------------------- contracts


class OptionContract(_OptionModel):
    """One option contract and the market state it is valued at.

    Attributes
    ----------
    symbol
        ccxt unified symbol (``BTC/USD:BTC-240628-60000-C``).
    underlying_price
        Spot (``black_scholes``, ``inverse``) or forward (``black76``) price in USD; accepted as
        ``underlying_price``, ``underlyingPrice`` (ccxt), ``spot`` or ``forward``.
    strike
        Strike in USD.
    expiry
        Time to expiry in years (a number), or the expiry instant as an ISO 8601 timestamp
        (ccxt's ``expiryDatetime`` is accepted too); naive timestamps are UTC.
    valuation_time
        When the contract is valued, needed with an ISO ``expiry``: an ISO timestamp or a ccxt
        timestamp in milliseconds. Years count as 365 days.
    kind
        ``"call"`` or ``"put"`` (ccxt's ``optionType`` is accepted).
    contract_size
        Units of underlying per contract (Deribit BTC options: 1 BTC).
    sigma
        Annualized volatility as a decimal (0.6 is 60 %). When absent, the implied volatility
        of ``mark_price`` is used.
    mark_price
        Option price per unit of underlying: USD for ``black_scholes`` and ``black76``, coin
        for ``inverse`` (Deribit quotes BTC options in BTC).
    model
        ``"black_scholes"``, ``"black76"`` or ``"inverse"``.
    rate
        Continuously compounded rate.
    """

    symbol: str = ""
    underlying_price: Positive = Field(
        validation_alias=AliasChoices(
            "underlying_price", "underlyingPrice", "spot", "forward", "underlying"
        )
    )
    strike: Positive
    expiry: float | str = Field(
        validation_alias=AliasChoices("expiry", "expiry_datetime", "expiryDatetime")
    )
    valuation_time: float | str | None = None
    kind: Kind = Field(validation_alias=AliasChoices("kind", "option_type", "optionType"))
    contract_size: Positive = 1.0
    sigma: Positive | None = None
    mark_price: Positive | None = None
    model: Model = "black_scholes"
    rate: Finite = 0.0

    @field_validator("expiry")
    @classmethod
    def _check_expiry(cls, value: float | str) -> float | str:
        if isinstance(value, str):
            _instant(value)  # raises ValueError naming the problem
            return value
        if not math.isfinite(value) or value <= 0.0:
            raise ValueError(f"expiry is in the past or now ({value} years): the option expired")
        if value > _MAX_YEARS:
            raise ValueError(
                f"expiry {value} is not a time to expiry in years; give years, or the expiry "
                "as an ISO timestamp (ccxt's expiryDatetime) with a valuation_time"
            )
        return value

    @field_validator("valuation_time")
    @classmethod
    def _check_valuation_time(cls, value: float | str | None) -> float | str | None:
        if value is not None:
            _instant(value)
        return value

    def years_to_expiry(
        self, valuation_time: float | str | None = None, *, root: str = ""
    ) -> float:
        """Time to expiry in years, valued at ``self.valuation_time`` or else ``valuation_time``.

        Raises
        ------
        InvalidInput
            An ISO expiry without any valuation time, or an expiry at or before it.
        """
        if not isinstance(self.expiry, str):
            return float(self.expiry)
        when = self.valuation_time if self.valuation_time is not None else valuation_time
        if when is None:
            raise InvalidInput(
                f"{root}expiry is a timestamp ({self.expiry}): give valuation_time (ISO or ccxt "
                "milliseconds) or the expiry in years",
                field=f"{root}valuation_time",
            )
        t = (_instant(self.expiry) - _instant(when)).total_seconds() / _SECONDS_PER_YEAR
        if not t > 0.0:
            raise InvalidInput(
                f"{root}expiry {self.expiry} is not after the valuation time {when}: the option "
                "has expired; leave it out",
                field=f"{root}expiry",
                value=self.expiry,
            )
        return t


class OptionPosition(OptionContract):
    """A position in one option, as ccxt's ``fetch_positions`` reports it merged with its market.

    ``contracts`` is non-negative with ``side``; a signed ``contracts`` without ``side`` is
    also accepted (negative is short).
    """

    # ccxt positions carry many more keys: those are accepted and ignored, any other refused
    model_config = ConfigDict(extra="ignore")
    accepted_extra_keys = CCXT_POSITION_KEYS_ANY_CASE

    side: Side | None = None
    contracts: Finite

    @model_validator(mode="after")
    def _check_side(self) -> OptionPosition:
        if self.side is None:
            object.__setattr__(self, "side", "short" if self.contracts < 0 else "long")
            object.__setattr__(self, "contracts", abs(self.contracts))
        elif self.contracts < 0:
            raise ValueError(
                f"contracts must be non-negative when side is given, got {self.contracts}"
            )
        return self

    @property
    def signed_contracts(self) -> float:
        """Contracts, negative for a short."""
        return self.contracts if self.side == "long" else -self.contracts


def _instant(value: float | str) -> datetime:
    """An ISO 8601 timestamp (naive means UTC) or ccxt milliseconds, as an aware datetime."""
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 timestamp") from None
        return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
    if not math.isfinite(value):
        raise ValueError(f"must be an ISO timestamp or milliseconds since 1970, got {value}")
    return datetime.fromtimestamp(value / 1000.0, UTC)


@dataclass(frozen=True)
class _Priced:
    """One contract valued: greeks as ``greeks`` returns them, and per-contract USD figures."""

    t: float
    sigma: float
    g: Greeks
    delta_notional: float  # Δ·c·S, USD per contract (signed)
    gamma_exposure: float  # Γ·c·S²/100, USD of N_Δ per 1 % per contract
    vega: float  # USD per 1.00 of vol per contract (≥ 0)
    value: float  # mark value, USD per contract


def _price(contract: OptionContract, valuation_time: float | str | None, root: str) -> _Priced:
    """Value one contract (solving the implied volatility when only a mark price is given).

    Raises
    ------
    InvalidInput
        From :meth:`OptionContract.years_to_expiry`, or a mark price no volatility reproduces.
    """
    t = contract.years_to_expiry(valuation_time, root=root)
    s, k, r = contract.underlying_price, contract.strike, contract.rate
    sigma = contract.sigma
    if sigma is None:
        mark = contract.mark_price
        if mark is None:
            raise InvalidInput(
                f"{root}sigma: give the volatility sigma, or a mark_price to solve it from",
                field=f"{root}sigma",
            )
        try:
            sigma = implied_volatility(mark, s, k, t, r, contract.kind, contract.model)
        except InvalidInput as exc:
            raise InvalidInput(
                f"{root}mark_price: {exc.message}", field=f"{root}mark_price", value=mark
            ) from None
    g = greeks(s, k, t, sigma, r, contract.kind, contract.model)
    cs = contract.contract_size
    to_usd = s if contract.model == "inverse" else 1.0  # inverse greeks are in coin
    return _Priced(
        t=t,
        sigma=sigma,
        g=g,
        delta_notional=g.delta * cs * s,
        gamma_exposure=g.gamma * cs * s * s / 100.0,
        vega=g.vega * cs * to_usd,
        value=g.price * cs * to_usd,
    )


def _number(value: Any) -> float:
    """``value`` as a float, NaN when it is not a number (so that range checks reject it)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _check_equity(value: float, field: str) -> float:
    x = _number(value)
    if not (math.isfinite(x) and x > 0):
        raise InvalidInput(
            f"{field} must be a positive number (USD; coin equity × spot for a coin-margined "
            f"account), got {value}",
            field=field,
            value=value,
        )
    return x


# --------------------------------------------------------------------------- exposure


class OptionPositionExposure(_OptionModel):
    """Exposure of one option position (USD unless stated; leverage figures per unit of equity).

    ``price``, ``delta`` and ``vega_per_unit`` are per unit of underlying as
    :func:`~levalign.risk.greeks.greeks` returns them (coin for ``inverse``); the other
    figures are for the whole position, signed (a short call has negative delta notional).
    """

    symbol: str
    side: Side
    contracts: float
    model: Model
    t: float
    sigma: float
    price: float
    delta: float
    vega_per_unit: float
    value: float
    delta_notional: float
    delta_leverage: float
    gamma_exposure: float
    vega: float
    vega_per_equity: float


class OptionExposureReport(_OptionModel):
    """Delta, gamma and vega exposure of an account's option positions.

    ``delta_leverage`` nets the positions' signed delta notionals (meaningful within one
    underlying); ``gross_delta_leverage`` adds their absolute values.
    """

    equity: float
    delta_notional: float
    gross_delta_notional: float
    delta_leverage: float
    gross_delta_leverage: float
    gamma_exposure: float
    gamma_per_equity: float
    vega: float
    vega_per_equity: float
    gross_vega_per_equity: float
    positions: list[OptionPositionExposure]


def option_exposure(
    positions: Sequence[OptionPosition | Mapping[str, Any]],
    equity: float,
    *,
    valuation_time: float | str | None = None,
) -> OptionExposureReport:
    r"""Delta-adjusted notional and leverage, gamma exposure and vega of option positions.

    Parameters
    ----------
    positions
        :class:`OptionPosition` models or their JSON (ccxt camelCase accepted).
    equity
        Account equity in USD (coin equity × spot for a coin-margined account).
    valuation_time
        Valuation instant for positions whose ``expiry`` is a timestamp and which carry no
        ``valuation_time`` of their own (ISO, or ccxt milliseconds).

    Returns
    -------
    OptionExposureReport

    Raises
    ------
    InvalidInput
        A non-positive or non-finite equity (``equity``); a bad position field, named as
        ``positions[i].field`` (non-positive or NaN price, strike or sigma, unknown kind or
        model, an expired option, a mark price no volatility reproduces).

    Notes
    -----
    Per position :math:`i` with signed contracts :math:`q_i`, contract size :math:`c_i`,
    underlying (forward) price :math:`S_i`, and greeks as ``greeks`` returns them
    (:math:`\Delta, \Gamma` per unit of underlying, coin delta for inverse options;
    :math:`\mathcal V` in USD, or in coin times :math:`S_i` for inverse options):

    .. math::

        N_{\Delta,i} = \Delta_i q_i c_i S_i, \quad
        \lambda_\Delta = \frac{\sum_i N_{\Delta,i}}{E}, \quad
        \lambda_\Delta^{\text{gross}} = \frac{\sum_i |N_{\Delta,i}|}{E}, \quad
        G = \sum_i \frac{\Gamma_i q_i c_i S_i^2}{100}, \quad
        \frac{\mathcal V}{E} = \frac{\sum_i \mathcal V_i q_i c_i}{E}

    :math:`G` is the change of the delta notional, in USD, for a 1 % rise of every
    underlying (Hull, 9th ed., §19.6, with the delta expressed in notional); the units of
    inverse options are derived in the module docstring.
    """
    eq = _check_equity(equity, "equity")
    rows: list[OptionPositionExposure] = []
    for i, raw in enumerate(positions):
        root = f"positions[{i}]"
        pos = raw if isinstance(raw, OptionPosition) else parse(OptionPosition, raw, root=root)
        priced = _price(pos, valuation_time, root + ".")
        q = pos.signed_contracts
        side: Side = "short" if q < 0 else "long"
        rows.append(
            OptionPositionExposure(
                symbol=pos.symbol,
                side=side,
                contracts=abs(q),
                model=pos.model,
                t=priced.t,
                sigma=priced.sigma,
                price=priced.g.price,
                delta=priced.g.delta,
                vega_per_unit=priced.g.vega,
                value=q * priced.value,
                delta_notional=q * priced.delta_notional,
                delta_leverage=q * priced.delta_notional / eq,
                gamma_exposure=q * priced.gamma_exposure,
                vega=q * priced.vega,
                vega_per_equity=q * priced.vega / eq,
            )
        )
    net = math.fsum(r.delta_notional for r in rows)
    gross = math.fsum(abs(r.delta_notional) for r in rows)
    gamma = math.fsum(r.gamma_exposure for r in rows)
    vega = math.fsum(r.vega for r in rows)
    return OptionExposureReport(
        equity=eq,
        delta_notional=net,
        gross_delta_notional=gross,
        delta_leverage=net / eq,
        gross_delta_leverage=gross / eq,
        gamma_exposure=gamma,
        gamma_per_equity=gamma / eq,
        vega=vega,
        vega_per_equity=vega / eq,
        gross_vega_per_equity=math.fsum(abs(r.vega) for r in rows) / eq,
        positions=rows,
    )


# --------------------------------------------------------------------------- copying a lead


class OptionLeadEvent(_OptionModel):
    """A change in the lead's position in one option (signed contracts before and after).

    ``timestamp`` (ISO or ccxt milliseconds) values the option when its ``expiry`` is a
    timestamp and it carries no ``valuation_time``. ``lead_equity`` is in USD.
    """

    event_id: str
    timestamp: float | str | None = None
    option: OptionContract
    lead_equity: Positive
    lead_position_before: Finite
    lead_position_after: Finite


class OptionFollower(_OptionModel):
    """One row of an options cohort given as JSON (see :class:`OptionCohort` for the columns).

    Values are not range-checked here: a bad value makes that row ``INVALID_ROW``.
    """

    id: str | int
    equity: float
    position: float = 0.0
    scale: float = 1.0
    max_leverage: float | None = None
    max_position_leverage: float | None = None
    max_vega: float | None = None
    other_delta_notional: float = 0.0
    other_vega: float = 0.0
    min_size_policy: str = "skip"
    residual: float = 0.0


# column -> default; None means required
_FLOAT_COLUMNS: dict[str, float | None] = {
    "equity": None,
    "position": 0.0,
    "scale": 1.0,
    "max_leverage": math.inf,
    "max_position_leverage": math.inf,
    "max_vega": math.inf,
    "other_delta_notional": 0.0,
    "other_vega": 0.0,
    "residual": 0.0,
}
_CAP_COLUMNS = ("max_leverage", "max_position_leverage", "max_vega")
OPTION_COHORT_COLUMNS = ("id", *_FLOAT_COLUMNS, "min_size_policy")


@dataclass(frozen=True, eq=False)
class OptionCohort:
    """Followers of an options lead, as a struct of arrays.

    Columns: ``id``, ``equity`` (USD, required); ``position`` (signed contracts of the lead's
    option held); ``scale``; ``max_leverage`` (cap on gross account delta leverage),
    ``max_position_leverage`` (cap on this option's delta leverage), ``max_vega`` (cap on
    gross vega per unit of equity, vega per 1.00 of vol); ``other_delta_notional`` and
    ``other_vega`` (gross delta notional and vega of the follower's other positions, USD);
    ``min_size_policy`` (``skip | round_up | accumulate``); ``residual`` (contracts carried by
    ``accumulate``). Missing caps (absent, None, or null/NaN in a table) are infinite.
    """

    ids: NDArray[Any]
    floats: dict[str, NDArray[np.float64]]
    policy: NDArray[np.int8]

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_table(cls, table: Any) -> OptionCohort:
        """Convert a pyarrow/pandas/polars table, a dict of columns or a list of rows.

        Raises
        ------
        InvalidInput
            A missing ``id`` or ``equity`` column, an unknown or non-numeric column, or a
            malformed JSON row (named as ``followers[i].field``).
        """
        if isinstance(table, OptionCohort):
            return table
        columns = columns_of(table, OptionFollower)
        check_columns(columns, OPTION_COHORT_COLUMNS)
        ids = checked_ids(columns["id"])
        n = len(ids)
        floats = {
            name: float_column(columns[name], name, n, default)
            if name in columns
            else np.full(n, math.nan if default is None else default)
            for name, default in _FLOAT_COLUMNS.items()
        }
        for cap in _CAP_COLUMNS:  # a null cap (NaN in Arrow/pandas) is no cap
            floats[cap] = np.where(np.isnan(floats[cap]), math.inf, floats[cap])
        policy = code_column(columns.get("min_size_policy"), POLICIES, "skip", n)
        return cls(ids=ids, floats=floats, policy=policy)


@dataclass(frozen=True)
class _Event:
    """A digested options lead event: everything the cohort kernel needs, as scalars."""

    kind: int  # levalign._codes.EV_*
    side: float  # lead side after an open/increase/flip, before a reduce/close
    units: float  # lead contracts opened per USD of lead equity
    phi: float  # fraction of its position the lead cut (reduce)
    delta_notional: float  # Δ·c·S per contract, USD (signed: negative for a put)
    vega: float  # vega·c per contract, USD per 1.00 of vol

    @property
    def abs_delta_notional(self) -> float:
        """|Δ|·c·S per contract: what one contract adds to the gross delta notional."""
        return abs(self.delta_notional)


def _digest(ev: OptionLeadEvent, priced: _Priced) -> _Event:
    before, after = ev.lead_position_before, ev.lead_position_after
    kind, side, phi = classify_change(before, after)
    units = 0.0
    if kind in (codes.EV_OPEN, codes.EV_FLIP):
        units = abs(after) / ev.lead_equity
    elif kind == codes.EV_INCREASE:
        units = (abs(after) - abs(before)) / ev.lead_equity
    return _Event(
        kind=kind,
        side=side,
        units=units,
        phi=phi,
        delta_notional=priced.delta_notional,
        vega=priced.vega,
    )


RESULT_COLUMNS = (
    "id",
    "side",
    "amount",
    "close_amount",
    "reduce_only",
    "target_position",
    "raw_amount",
    "reasons",
    "delta_leverage",
    "position_delta_leverage",
    "vega_per_equity",
    "residual",
)


@dataclass(frozen=True, eq=False)
class OptionNormalizeResult:
    r"""Columnar result, one row per follower.

    ``side`` is +1 buy / −1 sell / 0 no order; ``amount`` in contracts, whole steps except a
    close (the follower's exact position); ``close_amount`` the reduce-only part of a flip;
    ``target_position`` the signed position after the order; ``raw_amount`` the copy before
    caps and rounding; ``reasons`` :class:`~levalign.normalize.Reason` bits plus
    :data:`VEGA_LIMIT`. After the order: ``delta_leverage`` is the gross account delta leverage
    :math:`(|N_\Delta| + \text{other\_delta\_notional}) / E`, ``position_delta_leverage``
    this option's signed :math:`N_\Delta / E`, ``vega_per_equity`` the gross
    :math:`(|\mathcal V q c| + \text{other\_vega}) / E`. The event's valuation is in
    ``sigma``, ``delta`` (per unit, as ``greeks`` gives it), ``lead_delta_leverage`` and
    ``lead_vega_per_equity`` (signed, after the event).
    """

    event_id: str
    event_kind: str
    symbol: str
    sigma: float
    delta: float
    lead_delta_leverage: float
    lead_vega_per_equity: float
    columns: dict[str, NDArray[Any]]

    def __len__(self) -> int:
        return len(self.columns["id"])

    def __getitem__(self, name: str) -> NDArray[Any]:
        return self.columns[name]

    def orders(self) -> list[dict[str, Any]]:
        """Rows as JSON-ready dicts: ``side`` as ``buy``/``sell``/None, ``reasons`` as names."""
        out = []
        for i in range(len(self)):
            row: dict[str, Any] = {}
            for name in RESULT_COLUMNS:
                v = self.columns[name][i]
                if name == "side":
                    row[name] = {1: "buy", -1: "sell"}.get(int(v))
                elif name == "reasons":
                    row[name] = reason_names(int(v))
                elif name == "id":
                    row[name] = v.item() if hasattr(v, "item") else v
                elif name == "reduce_only":
                    row[name] = bool(v)
                else:
                    f = float(v)
                    row[name] = f if math.isfinite(f) else None
            out.append(row)
        return out


def reason_names(bits: int) -> list[str]:
    """Lower-case names of the reason bits set, ``vega_limit`` included."""
    from levalign.normalize import Reason

    return Reason.names(bits)


def _decimals(step: float) -> int:
    text = f"{step:.12f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


@dataclass(frozen=True)
class _Lots:
    """The contract step as an exact decimal: amounts are ``lots · units / scale``."""

    step: float
    min_amount: float
    units: int  # the step in units of 10^-decimals
    scale: float  # 10^decimals

    @classmethod
    def of(cls, amount_step: float, min_amount: float) -> _Lots:
        step = _number(amount_step)
        if not (math.isfinite(step) and step > 0):
            raise InvalidInput(
                f"amount_step must be a positive number of contracts, got {amount_step}",
                field="amount_step",
                value=amount_step,
            )
        least = _number(min_amount)
        if not (math.isfinite(least) and least >= 0):
            raise InvalidInput(
                f"min_amount must be a non-negative number of contracts, got {min_amount}",
                field="min_amount",
                value=min_amount,
            )
        scale = 10.0 ** _decimals(step)
        units = round(step * scale)
        if units == 0 or units / scale != step:
            raise InvalidInput(
                f"amount_step {amount_step} is not a decimal step of at most 12 decimals",
                field="amount_step",
                value=amount_step,
            )
        return cls(step, least, units, scale)


def normalize_options(
    event: OptionLeadEvent | Mapping[str, Any],
    followers: Any,
    *,
    amount_step: float,
    min_amount: float = 0.0,
) -> OptionNormalizeResult:
    r"""Size one options lead event for every follower, copying delta leverage × ``scale``.

    Parameters
    ----------
    event
        The lead's change in one option (:class:`OptionLeadEvent` or its JSON).
    followers
        The cohort: :class:`OptionCohort`, a pyarrow Table, pandas/polars DataFrame, dict of
        columns or list of :class:`OptionFollower` rows.
    amount_step, min_amount
        The exchange's contract step and minimum order amount, in contracts (Deribit BTC
        options: 0.1 and 0.1).

    Returns
    -------
    OptionNormalizeResult

    Raises
    ------
    InvalidInput
        A malformed event (the field is named: ``event.option.strike``, ``event.lead_equity``,
        an expired option, a mark price no volatility reproduces), a bad ``amount_step`` or
        ``min_amount``, a missing or unknown follower column. A bad value in one follower row
        does not raise: that row gets ``INVALID_ROW``.

    Notes
    -----
    With :math:`a = |\Delta| c S` and :math:`v = \mathcal V c` per contract (USD, coin greeks
    converted as in the module docstring), an increase of :math:`\Delta q_L` contracts asks for
    :math:`\Delta q_F = \text{scale}\,\Delta q_L E_F / E_L` more contracts, and the follower's
    position :math:`Q` after the order is held to

    .. math::

        Q \le \frac{L_{\text{pos}} E_F}{a}, \qquad
        Q \le \frac{L E_F - D_o}{a}, \qquad
        Q \le \frac{V E_F - W_o}{v}

    (``max_position_leverage`` → ``POSITION_LEVERAGE``, ``max_leverage`` → ``ACCOUNT_LEVERAGE``,
    ``max_vega`` → :data:`VEGA_LIMIT`; :math:`D_o, W_o` the other positions' gross delta
    notional and vega), then rounded toward zero to whole steps, with the ``min_size_policy``
    when that is below ``min_amount`` (``round_up`` only if the rounded-up position meets every
    cap). A reduction by the fraction :math:`\phi` sells :math:`\phi` of the follower's
    position, to the nearest step; a close sells it all, exactly; a reduction scales the
    residual by :math:`1 - \phi`, a close or flip clears it.
    """
    ev = (
        event if isinstance(event, OptionLeadEvent) else parse(OptionLeadEvent, event, root="event")
    )
    lots = _Lots.of(amount_step, min_amount)
    priced = _price(ev.option, ev.timestamp, "event.option.")
    cohort = OptionCohort.from_table(followers)
    digest = _digest(ev, priced)
    cols = _cohort_kernel(digest, lots, cohort.floats, cohort.policy)
    return OptionNormalizeResult(
        event_id=ev.event_id,
        event_kind=codes.EVENT_KINDS[digest.kind],
        symbol=ev.option.symbol,
        sigma=priced.sigma,
        delta=priced.g.delta,
        lead_delta_leverage=priced.delta_notional * ev.lead_position_after / ev.lead_equity,
        lead_vega_per_equity=priced.vega * ev.lead_position_after / ev.lead_equity,
        columns={"id": cohort.ids, **cols},
    )


def _contracts_cap(limit: NDArray[np.float64], per_contract: float) -> NDArray[np.float64]:
    """Largest position (contracts) whose exposure ``per_contract · Q`` stays within ``limit``."""
    if per_contract > 0.0:
        return limit / per_contract
    return np.full(limit.shape, math.inf)


def _cohort_kernel(
    ev: _Event, lots: _Lots, f: Mapping[str, NDArray[np.float64]], policy: NDArray[np.int8]
) -> dict[str, NDArray[Any]]:
    """Vectorized over followers (numpy); :func:`reference_normalize_one` states it per row."""
    eq, pos, scale = f["equity"], f["position"], f["scale"]
    max_lev, max_pos_lev, max_vega = f["max_leverage"], f["max_position_leverage"], f["max_vega"]
    d_other, w_other, res_in = f["other_delta_notional"], f["other_vega"], f["residual"]
    n = eq.shape[0]
    a = ev.abs_delta_notional
    step, min_amount = lots.step, lots.min_amount
    acc = policy == codes.P_ACCUMULATE
    side = np.zeros(n, np.int8)
    amount = np.zeros(n)
    close_amt = np.zeros(n)
    reduce_only = np.zeros(n, np.bool_)
    raw = np.zeros(n)
    reasons = np.zeros(n, np.uint32)
    target = pos.copy()
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        valid = (
            np.isfinite(eq)
            & (eq > 0.0)
            & np.isfinite(pos)
            & np.isfinite(scale)
            & (scale >= 0.0)
            & (max_lev > 0.0)
            & (max_pos_lev > 0.0)
            & (max_vega > 0.0)
            & np.isfinite(d_other)
            & (d_other >= 0.0)
            & np.isfinite(w_other)
            & (w_other >= 0.0)
            & np.isfinite(res_in)
            & (policy >= 0)
        )
        residual = np.where(acc, res_in, 0.0)
        held = np.abs(pos)
        s_f = np.sign(pos)
        s = ev.side
        if ev.kind == codes.EV_NONE:
            reasons |= codes.R_NO_LEAD_CHANGE
        elif ev.kind in (codes.EV_REDUCE, codes.EV_CLOSE):
            holds = (held > 0.0) & (s_f == s)
            reasons[~holds] |= codes.R_NOTHING_TO_CLOSE
            if ev.kind == codes.EV_CLOSE:
                amt = held
                residual = np.zeros(n)
            else:
                amt = np.floor(ev.phi * held / step + 0.5) * lots.units / lots.scale
                full = amt >= held - 0.5 * step
                amt = np.where(full, held, amt)
                small = holds & ~full & (amt < min_amount - _EPS * step)
                reasons[small] |= codes.R_BELOW_MIN_AMOUNT
                up = small & (policy == codes.P_ROUND_UP)
                lots_min = math.ceil(min_amount / step - _EPS)
                amt = np.where(up, np.minimum(lots_min * lots.units / lots.scale, held), amt)
                amt = np.where(small & ~up, 0.0, amt)
                reasons[up] |= codes.R_ROUNDED_UP
                reasons[small & ~up] |= codes.R_SKIPPED
                residual = residual * (1.0 - ev.phi)
            sells = holds & (amt > 0.0)
            side[sells] = -s
            amount = np.where(sells, amt, 0.0)
            close_amt = amount.copy()
            reduce_only = sells
            target = np.where(sells, s_f * (held - amt), pos)
        else:  # open, increase, flip
            flips = (held > 0.0) & (s_f != s)
            close_amt = np.where(flips, held, 0.0)
            reasons[flips] |= codes.R_FLIPPED
            if ev.kind == codes.EV_FLIP:
                residual = np.zeros(n)
            residual = np.where(flips, 0.0, residual)
            cur = np.where(flips, 0.0, held)
            d = scale * ev.units * eq + np.where(acc, residual, 0.0)
            raw = d
            at_target = d <= 0.0
            reasons[at_target] |= codes.R_AT_TARGET
            want = cur + np.maximum(d, 0.0)
            caps = (
                (_contracts_cap(max_pos_lev * eq, a), codes.R_POSITION_LEVERAGE),
                (_contracts_cap(max_lev * eq - d_other, a), codes.R_ACCOUNT_LEVERAGE),
                (_contracts_cap(max_vega * eq - w_other, ev.vega), VEGA_LIMIT),
            )
            for cap_q, flag in caps:
                binds = ~at_target & (want > cur) & (cap_q < want)
                reasons[binds & (cap_q < want * _TIE)] |= flag
                want = np.where(binds, cap_q, want)
            d_ok = np.where(at_target, 0.0, np.maximum(want - cur, 0.0))
            exact = d_ok / step
            n_lots = np.floor(exact + _EPS)
            reasons[(exact - n_lots) > _EPS * np.maximum(1.0, exact)] |= codes.R_LOT_ROUNDING
            amt = n_lots * lots.units / lots.scale
            small = (d_ok > 0.0) & ((n_lots == 0.0) | (amt < min_amount - _EPS * step))
            reasons[small] |= codes.R_BELOW_MIN_AMOUNT
            lots_up = max(1.0, math.ceil(min_amount / step - _EPS))
            q_up = cur + lots_up * step
            fits = np.ones(n, np.bool_)
            for cap_q, _ in caps:
                fits &= q_up <= cap_q * _SLACK
            up = small & (policy == codes.P_ROUND_UP) & fits
            accumulated = small & acc
            skipped = small & ~up & ~accumulated
            amt = np.where(up, lots_up * lots.units / lots.scale, np.where(small, 0.0, amt))
            reasons[up] |= codes.R_ROUNDED_UP
            reasons[accumulated] |= codes.R_ACCUMULATED
            reasons[skipped] |= codes.R_SKIPPED
            residual = np.where(
                at_target,
                0.0,
                np.where(amt > 0.0, np.where(acc, np.maximum(d_ok - amt, 0.0), 0.0), d_ok),
            )
            buys = amt > 0.0
            side[buys] = s
            amount = np.where(buys, amt + close_amt, close_amt)
            only_close = ~buys & (close_amt > 0.0)
            side[only_close] = -s_f[only_close]
            reduce_only = only_close
            target = np.where(buys, s * (cur + amt), np.where(flips, 0.0, pos))
        q = np.abs(target)
        delta_lev = (a * q + d_other) / eq
        pos_delta_lev = ev.delta_notional * target / eq
        vega_pe = (ev.vega * q + w_other) / eq
    bad = ~valid
    side[bad] = 0
    reasons[bad] = codes.R_INVALID_ROW
    return {
        "side": side,
        "amount": np.where(bad, 0.0, amount),
        "close_amount": np.where(bad, 0.0, close_amt),
        "reduce_only": reduce_only & valid,
        "target_position": np.where(bad, pos, target),
        "raw_amount": np.where(bad, 0.0, raw),
        "reasons": reasons,
        "delta_leverage": np.where(bad, math.nan, delta_lev),
        "position_delta_leverage": np.where(bad, math.nan, pos_delta_lev),
        "vega_per_equity": np.where(bad, math.nan, vega_pe),
        "residual": np.where(bad, 0.0, residual),
    }


# --------------------------------------------------------------------------- reference


def reference_normalize_one(ev: _Event, lots: _Lots, row: Mapping[str, Any]) -> dict[str, Any]:
    """One follower, in plain Python: the specification the vectorized kernel is tested against.

    ``row`` holds the :class:`OptionCohort` float columns and ``min_size_policy`` by name.
    """
    eq, pos, scale = row["equity"], row["position"], row["scale"]
    policy = row["min_size_policy"]
    step, least = lots.step, lots.min_amount

    def decimal(n_lots: float) -> float:
        return n_lots * lots.units / lots.scale

    def after(target: float) -> dict[str, float]:
        a = abs(ev.delta_notional)
        return {
            "target_position": target,
            "delta_leverage": (a * abs(target) + row["other_delta_notional"]) / eq,
            "position_delta_leverage": ev.delta_notional * target / eq,
            "vega_per_equity": (ev.vega * abs(target) + row["other_vega"]) / eq,
        }

    ok_row = (
        math.isfinite(eq)
        and eq > 0
        and math.isfinite(pos)
        and math.isfinite(scale)
        and scale >= 0
        and all(row[c] > 0 for c in ("max_leverage", "max_position_leverage", "max_vega"))
        and all(
            math.isfinite(row[c]) and row[c] >= 0 for c in ("other_delta_notional", "other_vega")
        )
        and math.isfinite(row["residual"])
        and policy in POLICIES
    )
    out: dict[str, Any] = {
        "side": 0,
        "amount": 0.0,
        "close_amount": 0.0,
        "reduce_only": False,
        "raw_amount": 0.0,
        "reasons": 0,
        "residual": row["residual"] if policy == "accumulate" else 0.0,
    }
    if not ok_row:
        nan = dict.fromkeys(after(0.0), math.nan)
        return {
            **out,
            **nan,
            "target_position": pos,
            "reasons": codes.R_INVALID_ROW,
            "residual": 0.0,
        }
    s_f = (pos > 0) - (pos < 0)
    held = abs(pos)
    s = ev.side
    target = pos
    if ev.kind == codes.EV_NONE:
        out["reasons"] = codes.R_NO_LEAD_CHANGE
    elif ev.kind in (codes.EV_REDUCE, codes.EV_CLOSE):
        out["residual"] = 0.0 if ev.kind == codes.EV_CLOSE else out["residual"] * (1.0 - ev.phi)
        if held == 0 or s_f != s:
            out["reasons"] = codes.R_NOTHING_TO_CLOSE
        else:
            amt = held
            if ev.kind == codes.EV_REDUCE:
                amt = decimal(math.floor(ev.phi * held / step + 0.5))
                if amt >= held - step / 2:
                    amt = held
                elif amt < least - _EPS * step:
                    if policy == "round_up":
                        amt = min(decimal(math.ceil(least / step - _EPS)), held)
                        out["reasons"] = codes.R_BELOW_MIN_AMOUNT | codes.R_ROUNDED_UP
                    else:
                        amt = 0.0
                        out["reasons"] = codes.R_BELOW_MIN_AMOUNT | codes.R_SKIPPED
            if amt > 0:
                out.update(side=-s_f, amount=amt, close_amount=amt, reduce_only=True)
                target = s_f * (held - amt)
    else:  # open, increase, flip
        out.update(_reference_open(ev, lots, row, out["residual"]))
        target = out.pop("target_position")
    return {**out, **after(target)}


def _reference_open(
    ev: _Event, lots: _Lots, row: Mapping[str, Any], residual: float
) -> dict[str, Any]:
    """The order fields of one follower for an open, increase or flip (reference)."""
    eq, pos, policy = row["equity"], row["position"], row["min_size_policy"]
    step, least = lots.step, lots.min_amount
    s_f = (pos > 0) - (pos < 0)
    held = abs(pos)
    s = ev.side
    reasons = 0
    close = 0.0
    if ev.kind == codes.EV_FLIP:
        residual = 0.0
    if held > 0 and s_f != s:
        close, held, pos = held, 0.0, 0.0
        reasons |= codes.R_FLIPPED
        residual = 0.0
    wanted = row["scale"] * ev.units * eq + (residual if policy == "accumulate" else 0.0)
    out: dict[str, Any] = {"raw_amount": wanted}
    buy = 0.0
    if wanted <= 0:
        reasons |= codes.R_AT_TARGET
        residual = 0.0
    else:
        # the largest position each cap allows, in the order they are applied
        a = abs(ev.delta_notional)
        caps = [
            (
                row["max_position_leverage"] * eq / a if a > 0 else math.inf,
                codes.R_POSITION_LEVERAGE,
            ),
            (
                (row["max_leverage"] * eq - row["other_delta_notional"]) / a if a > 0 else math.inf,
                codes.R_ACCOUNT_LEVERAGE,
            ),
            (
                (row["max_vega"] * eq - row["other_vega"]) / ev.vega if ev.vega > 0 else math.inf,
                VEGA_LIMIT,
            ),
        ]
        goal = held + wanted
        for cap, flag in caps:
            if goal > held and cap < goal:
                if cap < goal * _TIE:
                    reasons |= flag
                goal = cap
        room = max(goal - held, 0.0)
        n_lots = math.floor(room / step + _EPS)
        if room / step - n_lots > _EPS * max(1.0, room / step):
            reasons |= codes.R_LOT_ROUNDING
        buy = n_lots * lots.units / lots.scale
        if room > 0 and (n_lots == 0 or buy < least - _EPS * step):
            reasons |= codes.R_BELOW_MIN_AMOUNT
            up = max(1, math.ceil(least / step - _EPS))
            if policy == "round_up" and all(held + up * step <= c * _SLACK for c, _ in caps):
                buy = up * lots.units / lots.scale
                reasons |= codes.R_ROUNDED_UP
            else:
                buy = 0.0
                reasons |= codes.R_ACCUMULATED if policy == "accumulate" else codes.R_SKIPPED
        carried = max(room - buy, 0.0) if policy == "accumulate" else 0.0
        residual = carried if buy > 0 else room  # carried (accumulate) or recorded (skip)
    out.update(reasons=reasons, residual=residual, target_position=pos)
    if buy > 0:
        out.update(
            side=int(s), amount=buy + close, close_amount=close, target_position=s * (held + buy)
        )
    elif close > 0:
        out.update(side=-s_f, amount=close, close_amount=close, reduce_only=True)
    return out


def reference_normalize_options(
    event: OptionLeadEvent | Mapping[str, Any],
    followers: Any,
    *,
    amount_step: float,
    min_amount: float = 0.0,
) -> OptionNormalizeResult:
    """:func:`normalize_options` through :func:`reference_normalize_one`, one follower at a time.

    Raises
    ------
    InvalidInput
        As :func:`normalize_options`.
    """
    ev = (
        event if isinstance(event, OptionLeadEvent) else parse(OptionLeadEvent, event, root="event")
    )
    lots = _Lots.of(amount_step, min_amount)
    priced = _price(ev.option, ev.timestamp, "event.option.")
    cohort = OptionCohort.from_table(followers)
    digest = _digest(ev, priced)
    rows = []
    for i in range(len(cohort)):
        row: dict[str, Any] = {k: float(v[i]) for k, v in cohort.floats.items()}
        code = int(cohort.policy[i])
        row["min_size_policy"] = POLICIES[code] if code >= 0 else "?"
        rows.append(reference_normalize_one(digest, lots, row))
    dtypes = {"side": np.int8, "reduce_only": np.bool_, "reasons": np.uint32}
    columns: dict[str, NDArray[Any]] = {"id": cohort.ids}
    for name in RESULT_COLUMNS[1:]:
        columns[name] = np.array([r[name] for r in rows], dtype=dtypes.get(name, np.float64))
    return OptionNormalizeResult(
        event_id=ev.event_id,
        event_kind=codes.EVENT_KINDS[digest.kind],
        symbol=ev.option.symbol,
        sigma=priced.sigma,
        delta=priced.g.delta,
        lead_delta_leverage=priced.delta_notional * ev.lead_position_after / ev.lead_equity,
        lead_vega_per_equity=priced.vega * ev.lead_position_after / ev.lead_equity,
        columns=columns,
    )
