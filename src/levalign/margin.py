r"""Margin models: initial and maintenance margin, PnL, equity and liquidation prices.

One class per exchange family; the formulas are in each class's docstring. The scalar API
(:meth:`TieredMarginModel.account`) solves any account exactly; the vectorized functions
(:func:`liquidation_prices`, :func:`maintenance_margins`) serve many single-leg positions at
once and are tested against the scalar API.

The exact solver
----------------
Write a symbol's legs in the *margin variable* ``v`` (``v = x`` for linear, ``v = 1/x`` for
inverse contracts, ``x`` the price). Leg ``i`` has base quantity ``Q_i`` (quote units for
inverse), notional ``Q_i v`` and PnL ``c_i (v − r_i)`` with ``c_i = s_i Q_i`` and ``r_i = EP_i``
(linear) or ``c_i = −s_i Q_i`` and ``r_i = 1/EP_i`` (inverse). Margin balance minus maintenance
margin,

.. math:: g(v) = B + \sum_i c_i (v - r_i) - \sum_i \left(Q_i v\,\mathrm{mmr}_{k_i(v)}
          - \mathrm{cum}_{k_i(v)}\right),

is linear between the breakpoints ``v = floor_k / Q_i`` where a leg changes tier. The solver
walks those segments and returns the root nearest the mark: the liquidation price with every
leg in the tier its notional *at that price* falls in.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from levalign import _margin_kernels as mk
from levalign.errors import InvalidInput, Rejected
from levalign.markets import (
    Markets,
    MarketSpec,
    TierTable,
    as_markets,
    load_markets,
    rebuild_cum,
)
from levalign.schemas import Account, AccountReport, PositionReport, parse

__all__ = [
    "BybitMarginModel",
    "HyperliquidMarginModel",
    "Leg",
    "TieredMarginModel",
    "liquidation_prices",
    "maintenance_margins",
    "margin_model",
    "margin_report",
]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Leg:
    """One leg of a symbol's position: side ``+1``/``−1``, contracts, entry price."""

    side: float
    contracts: float
    entry_price: float


class TieredMarginModel:
    r"""Binance-style tiered margin (Binance USDⓈ-M and COIN-M; Bybit, OKX, Bitget alike).

    For a notional :math:`N` (quote currency for linear, coin for inverse contracts) in tier
    :math:`n` of the leverage-bracket table:

    .. math::

        \mathrm{IM} = N / \ell, \qquad \ell \le \mathrm{maxLeverage}_n

        \mathrm{MM} = N \cdot \mathrm{mmr}_n - \mathrm{cum}_n

    Linear contracts: :math:`N = q\,c\,x`, PnL :math:`= s\,q\,c\,(x - EP)`. Inverse contracts:
    :math:`N = q\,c / x` (coin), PnL :math:`= s\,q\,c\,(1/EP - 1/x)` (coin).

    Liquidation price, one-way mode (Binance, "How to Calculate Liquidation Price of USDⓈ-M
    Contracts"), side :math:`s`, quantity :math:`Q`:

    .. math::

        LP = \frac{WB - TMM + UPNL + \mathrm{cum} - s\,Q\,EP}{Q\,\mathrm{mmr} - s\,Q}

    :math:`WB` is the cross wallet balance (cross) or the position's isolated margin
    (isolated); :math:`TMM` and :math:`UPNL` are the maintenance margin and unrealized PnL of
    all *other* cross positions (zero when isolated). Hedge mode adds the long and short legs
    of the symbol, each with its own bracket:

    .. math::

        LP = \frac{WB - TMM + UPNL + \mathrm{cum}_L + \mathrm{cum}_S - Q_L EP_L + Q_S EP_S}
                  {Q_L\,\mathrm{mmr}_L + Q_S\,\mathrm{mmr}_S - Q_L + Q_S}

    COIN-M (Binance, "How to Calculate Liquidation Price of COIN-M Contracts"):

    .. math::

        LP = \frac{Q\,\mathrm{mmr} + s\,Q}{WB + \mathrm{cum} + s\,Q / EP}

    The bracket (``mmr``, ``cum``) is that of the notional *at the liquidation price*; the
    solver in this module finds it exactly.

    Account figures: equity :math:`= WB_{total} + \sum UPNL`, margin ratio
    :math:`= \sum MM / \text{equity}`, effective leverage :math:`= \sum |N| / \text{equity}`.
    """

    family: ClassVar[str] = "binance"
    supports_hedge_mode: ClassVar[bool] = True

    # ------------------------------------------------------------------ per position

    def notional(self, market: MarketSpec, contracts: float, price: float) -> float:
        """Notional in the settle currency (see the class docstring)."""
        return market.notional(abs(contracts), price)

    def unrealized_pnl(
        self,
        market: MarketSpec,
        side: float,
        contracts: float,
        entry_price: float,
        mark_price: float,
    ) -> float:
        """PnL in the settle currency of ``contracts`` opened at ``entry_price``, at the mark."""
        qty = abs(contracts) * market.contract_size
        if market.linear:
            return side * qty * (mark_price - entry_price)
        return side * qty * (1.0 / entry_price - 1.0 / mark_price)

    def maintenance_margin(self, market: MarketSpec, contracts: float, price: float) -> float:
        """``N · mmr − cum`` for the bracket holding ``N``."""
        return market.tiers.maintenance_margin(self.notional(market, contracts, price))

    def initial_margin(
        self, market: MarketSpec, contracts: float, price: float, leverage: float
    ) -> float:
        """``N / leverage``.

        Raises
        ------
        InvalidInput
            If ``leverage`` is not a positive number.
        Rejected
            If ``leverage`` is above the bracket's maximum for this notional.
        """
        if not (math.isfinite(leverage) and leverage > 0):
            raise InvalidInput(
                f"leverage must be a positive number, got {leverage}",
                field="leverage",
                value=leverage,
            )
        notional = self.notional(market, contracts, price)
        max_leverage = market.tiers.max_leverage_at(notional)
        if leverage > max_leverage * (1 + 1e-12):
            raise Rejected(
                f"leverage {leverage:g}x is above the maximum {max_leverage:g}x that "
                f"{market.symbol} allows at notional {notional:,.2f}; lower the leverage or "
                "the position",
                field="leverage",
                value=leverage,
                details={
                    "symbol": market.symbol,
                    "max_leverage": max_leverage,
                    "notional": notional,
                },
            )
        return notional / leverage

    def liquidation_price(
        self,
        market: MarketSpec,
        legs: Sequence[Leg],
        balance: float,
        mark_price: float,
    ) -> float | None:
        """Exact liquidation price of a symbol's legs given the margin balance behind them.

        Parameters
        ----------
        legs
            One leg (one-way mode, or one isolated hedge side) or two (cross hedge mode).
        balance
            ``WB − TMM + UPNL`` of the formula in the class docstring: the isolated margin, or
            the cross wallet balance less other positions' maintenance margin plus their PnL.
        mark_price
            When ``g`` has several roots, the one nearest this price is returned.

        Returns
        -------
        float or None
            None when no positive price liquidates the legs; ``mark_price`` when every price
            does (the balance is already below maintenance margin).
        """
        return _solve_liquidation(market, legs, balance, mark_price)

    # ------------------------------------------------------------------ account

    def account(
        self, account: Account | Mapping[str, Any], markets: Markets | None = None
    ) -> AccountReport:
        """Margin report of a whole account (the ``levalign margin`` output).

        Raises
        ------
        InvalidInput
            Malformed account, unknown symbol, positions settling in different currencies, two
            positions of one symbol in one-way mode, hedge mode where the venue has none.
        Rejected
            A position's leverage above its bracket's maximum.
        """
        acct = account if isinstance(account, Account) else parse(Account, account, root="account")
        if markets is None:
            markets = load_markets(acct.exchange, markets=acct.markets, tiers=acct.tiers)
        specs = [markets[p.symbol] for p in acct.positions]
        settles = {s.settle for s in specs}
        if len(settles) > 1:
            raise InvalidInput(
                f"positions settle in {', '.join(sorted(settles))}: one account holds one settle "
                "currency; split it into one account per currency",
                field="positions",
            )
        self._check_position_mode(acct, specs)

        pnl = [
            self.unrealized_pnl(m, p.sign, p.contracts, p.entry_price, p.mark_price)
            for p, m in zip(acct.positions, specs, strict=True)
        ]
        notional = [
            self.notional(m, p.contracts, p.mark_price)
            for p, m in zip(acct.positions, specs, strict=True)
        ]
        mm = [m.tiers.maintenance_margin(n) for m, n in zip(specs, notional, strict=True)]
        equity = acct.wallet_balance + sum(pnl)
        if equity <= 0:
            raise InvalidInput(
                f"account equity (wallet_balance + unrealized PnL) is {equity:,.2f}: it must be "
                "positive (the account is already bankrupt)",
                field="wallet_balance",
                value=acct.wallet_balance,
            )
        isolated_total = sum(
            p.collateral or 0.0 for p in acct.positions if p.margin_mode == "isolated"
        )
        cross_wallet = acct.wallet_balance - isolated_total

        reports: list[PositionReport] = []
        for i, (pos, spec) in enumerate(zip(acct.positions, specs, strict=True)):
            leverage = pos.leverage
            if leverage is None:
                leverage = (
                    notional[i] / pos.collateral
                    if pos.margin_mode == "isolated" and pos.collateral
                    else spec.tiers.max_leverage_at(notional[i])
                )
                leverage = min(leverage, spec.tiers.max_leverage_at(notional[i]))
            im = self.initial_margin(spec, pos.contracts, pos.mark_price, leverage)
            if pos.margin_mode == "isolated":
                legs = [Leg(pos.sign, pos.contracts, pos.entry_price)]
                balance = float(pos.collateral or 0.0)
            else:
                same = [
                    j
                    for j, q in enumerate(acct.positions)
                    if q.margin_mode == "cross" and specs[j].symbol == spec.symbol
                ]
                others = [
                    j
                    for j, q in enumerate(acct.positions)
                    if q.margin_mode == "cross" and specs[j].symbol != spec.symbol
                ]
                legs = [
                    Leg(
                        acct.positions[j].sign,
                        acct.positions[j].contracts,
                        acct.positions[j].entry_price,
                    )
                    for j in same
                ]
                balance = cross_wallet - sum(mm[j] for j in others) + sum(pnl[j] for j in others)
            liq = self.liquidation_price(spec, legs, balance, pos.mark_price)
            distance = None if liq is None else abs(pos.mark_price - liq) / pos.mark_price
            reports.append(
                PositionReport(
                    symbol=spec.symbol,
                    side=pos.side or "long",
                    contracts=pos.contracts,
                    notional=notional[i],
                    initial_margin=im,
                    maintenance_margin=mm[i],
                    unrealized_pnl=pnl[i],
                    liquidation_price=liq,
                    liquidation_distance=distance,
                    effective_leverage=notional[i] / equity,
                    margin_mode=pos.margin_mode,
                    leverage=leverage,
                )
            )
        total_mm = sum(mm)
        return AccountReport(
            exchange=markets.exchange,
            settle=next(iter(settles)) if settles else "USDT",
            wallet_balance=acct.wallet_balance,
            equity=equity,
            initial_margin=sum(r.initial_margin for r in reports),
            maintenance_margin=total_mm,
            effective_leverage=sum(notional) / equity,
            margin_ratio=total_mm / equity,
            positions=reports,
        )

    def _check_position_mode(self, acct: Account, specs: Sequence[MarketSpec]) -> None:
        hedge = acct.position_mode == "hedge" or any(p.hedged for p in acct.positions)
        if hedge and not self.supports_hedge_mode:
            raise InvalidInput(
                f"{self.family} has no hedge mode: hold one net position per symbol",
                field="position_mode",
                value="hedge",
            )
        seen: dict[tuple[str, str], int] = {}
        for i, (p, spec) in enumerate(zip(acct.positions, specs, strict=True)):
            key = (spec.symbol, p.side or "") if hedge else (spec.symbol, "")
            if key in seen:
                what = f"two {p.side} positions" if hedge else "two positions"
                raise InvalidInput(
                    f"positions[{seen[key]}] and positions[{i}] are {what} in {spec.symbol}; "
                    + ("merge them" if hedge else "merge them, or set position_mode to 'hedge'"),
                    field=f"positions[{i}]",
                )
            seen[key] = i


class HyperliquidMarginModel(TieredMarginModel):
    r"""Hyperliquid perpetuals (USDC-settled, linear, one-way, cross or isolated).

    Tiers (Hyperliquid docs, "Margin tiers"): each tier has a maximum leverage
    :math:`L_n`; maintenance margin rate is half the initial margin at that leverage and the
    deduction is built like Binance's ``cum``:

    .. math::

        \mathrm{mmr}_n = \frac{1}{2 L_n}, \qquad
        \mathrm{MM} = N\,\mathrm{mmr}_n - \mathrm{deduction}_n, \qquad
        \mathrm{deduction}_n = \mathrm{floor}_n (\mathrm{mmr}_n - \mathrm{mmr}_{n-1})
        + \mathrm{deduction}_{n-1}

    Liquidation price (Hyperliquid docs, "Liquidations"), side :math:`s`, size :math:`Q`, at
    the current price :math:`x_0`:

    .. math::

        LP = x_0 - s\,\frac{\text{margin\_available}}{Q\,(1 - l\,s)}, \qquad l = \mathrm{mmr}

    with ``margin_available = isolated_margin − MM`` (isolated) or
    ``account_value − MM_total`` (cross). Substituting shows this is the tiered formula of
    :class:`TieredMarginModel` with the mark as reference price, so the same exact solver
    serves both; the bracket used is again the one at the liquidation notional.
    """

    family: ClassVar[str] = "hyperliquid"
    supports_hedge_mode: ClassVar[bool] = False

    @staticmethod
    def tier_table(
        lower_bounds: Sequence[float], max_leverages: Sequence[float], *, symbol: str = "?"
    ) -> TierTable:
        """Tier table from Hyperliquid's ``(lower notional bound, max leverage)`` steps.

        The last tier has no upper bound (``cap = inf``).
        """
        floor = [float(b) for b in lower_bounds]
        cap = [*floor[1:], math.inf]
        mmr = [1.0 / (2.0 * float(x)) for x in max_leverages]
        cum: list[float | None] = list(rebuild_cum(floor, mmr))
        return TierTable.from_rows(
            floor,
            cap,
            mmr,
            [float(x) for x in max_leverages],
            cum,
            symbol=symbol,
        )


class BybitMarginModel(TieredMarginModel):
    r"""Bybit-style tiered margin: maintenance margin taken at the *entry* notional.

    Bybit ("Liquidation Price (USDT Contract)", Bybit Help Center) and KuCoin ("How to
    Calculate Futures Liquidation Price") publish the isolated liquidation price of a linear
    position as

    .. math::

        LP = EP - s\,\frac{IM + \text{extra margin} - MM(Q \cdot EP)}{Q},
        \qquad MM(N) = N\,\mathrm{mmr} - \text{deduction}

    that is, the margin balance :math:`B` (isolated margin, or the cross balance behind the
    position) less the maintenance margin *at entry* is what the price may eat into:
    :math:`LP = EP - s\,(B - MM(Q\,EP)) / Q`. Binance instead takes the maintenance margin at
    the liquidation price; on Bybit's own example (1 BTC long at 20,000, 50x, mmr 0.5%) this
    model gives Bybit's 19,700 where the Binance convention gives 19,698.49.

    Hedge-mode pairs and inverse contracts use the exact solver of
    :class:`TieredMarginModel`.
    """

    family: ClassVar[str] = "bybit"

    def liquidation_price(
        self,
        market: MarketSpec,
        legs: Sequence[Leg],
        balance: float,
        mark_price: float,
    ) -> float | None:
        """Liquidation price with the maintenance margin at the entry notional (see class)."""
        if len(legs) != 1 or not market.linear:
            return super().liquidation_price(market, legs, balance, mark_price)
        leg = legs[0]
        qty = abs(leg.contracts) * market.contract_size
        mm = market.tiers.maintenance_margin(qty * leg.entry_price)
        lp = leg.entry_price - leg.side * (balance - mm) / qty
        return lp if lp > 0 else None


_MODELS: dict[str, TieredMarginModel] = {
    "binance": TieredMarginModel(),
    "bybit": BybitMarginModel(),
    "hyperliquid": HyperliquidMarginModel(),
}


def margin_model(family: str) -> TieredMarginModel:
    """The margin model of an exchange family (``"binance"``, ``"bybit"``, ``"hyperliquid"``)."""
    return _MODELS[family]


def margin_report(
    account: Account | Mapping[str, Any], markets: Markets | str | None = None
) -> AccountReport:
    """Margin report of an account, with the model of the account's exchange.

    See :meth:`TieredMarginModel.account`.
    """
    acct = account if isinstance(account, Account) else parse(Account, account, root="account")
    if markets is None:
        markets = load_markets(acct.exchange, markets=acct.markets, tiers=acct.tiers)
    markets = as_markets(markets)
    return margin_model(markets.family).account(acct, markets)


# ------------------------------------------------------------------ vectorized API


def liquidation_prices(
    market: MarketSpec,
    side: FloatArray,
    contracts: FloatArray,
    ref_price: FloatArray,
    balance: FloatArray,
) -> FloatArray:
    """Liquidation prices of many single-leg positions in one market (NaN: none).

    ``balance`` is the margin balance behind each position when the price is ``ref_price``:
    isolated margin with the entry price (Binance form), or margin balance at the mark
    (Hyperliquid form). See :func:`levalign._margin_kernels.liquidation_price_one_leg`.
    """
    t = market.tiers
    qty = np.abs(np.asarray(contracts, dtype=np.float64)) * market.contract_size
    return mk.liquidation_prices(
        np.ascontiguousarray(balance, dtype=np.float64),
        np.ascontiguousarray(side, dtype=np.float64),
        qty,
        np.ascontiguousarray(ref_price, dtype=np.float64),
        market.linear,
        t.floor,
        t.cap,
        t.mmr,
        t.cum,
    )


def maintenance_margins(market: MarketSpec, notional: FloatArray) -> FloatArray:
    """Maintenance margins of many notionals in one market."""
    t = market.tiers
    return mk.maintenance_margins(
        np.ascontiguousarray(notional, dtype=np.float64), t.cap, t.mmr, t.cum
    )


# ------------------------------------------------------------------ exact solver


def _solve_liquidation(
    market: MarketSpec, legs: Sequence[Leg], balance: float, mark_price: float
) -> float | None:
    t = market.tiers
    qty = [abs(leg.contracts) * market.contract_size for leg in legs if leg.contracts]
    legs = [leg for leg in legs if leg.contracts]
    if not legs:
        return None
    if market.linear:
        coef = [leg.side * q for leg, q in zip(legs, qty, strict=True)]
        ref = [leg.entry_price for leg in legs]
    else:
        coef = [-leg.side * q for leg, q in zip(legs, qty, strict=True)]
        ref = [1.0 / leg.entry_price for leg in legs]
    breaks = sorted({0.0, *(float(f) / q for q in qty for f in t.floor[1:]), math.inf})
    roots: list[float] = []
    for lo, hi in itertools.pairwise(breaks):
        probe = lo * 2 + 1 if math.isinf(hi) else (lo + hi) / 2
        tiers = [t.index(q * probe) for q in qty]
        alpha = (
            balance
            - sum(c * r for c, r in zip(coef, ref, strict=True))
            + sum(float(t.cum[k]) for k in tiers)
        )
        beta = sum(coef) - sum(q * float(t.mmr[k]) for q, k in zip(qty, tiers, strict=True))
        if beta == 0:
            continue
        v = -alpha / beta
        if lo * (1 - 1e-12) <= v <= hi * (1 + 1e-12) and v > 0:
            roots.append(v if market.linear else 1.0 / v)
    if not roots:
        # safe at every price, or below maintenance at every price: then liquidation is now
        v_mark = mark_price if market.linear else 1.0 / mark_price
        g_mark = (
            balance
            + sum(c * (v_mark - r) for c, r in zip(coef, ref, strict=True))
            - sum(t.maintenance_margin(q * v_mark) for q in qty)
        )
        return mark_price if g_mark < 0 else None
    return min(roots, key=lambda x: abs(x - mark_price))
