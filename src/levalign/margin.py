r"""Margin models: initial and maintenance margin, PnL, equity and liquidation prices.

One class per venue's published liquidation rule (:func:`margin_model` maps a family name of
:data:`levalign.markets.EXCHANGE_FAMILIES` to it); the formula and its source are in each
class's docstring. The scalar API
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

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from levalign import _margin_kernels as mk
from levalign.errors import ConfigurationError, InvalidInput, Rejected
from levalign.markets import (
    Markets,
    MarketSpec,
    TierTable,
    as_markets,
    hyperliquid_tier_table,
    load_markets,
)
from levalign.schemas import Account, AccountReport, Position, PositionReport, parse

__all__ = [
    "BitgetMarginModel",
    "BybitMarginModel",
    "FeeTieredMarginModel",
    "GateMarginModel",
    "HyperliquidMarginModel",
    "KucoinMarginModel",
    "Leg",
    "OkxMarginModel",
    "TieredMarginModel",
    "liquidation_market",
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


def _info_value(info: Mapping[str, Any], *path: str) -> Any:
    """The value at ``path`` in a venue's raw ``info`` payload, or None."""
    node: Any = info
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _info_number(info: Mapping[str, Any], *path: str) -> float | None:
    """A number at ``path`` in a venue's raw ``info`` payload (strings as ccxt passes them)."""
    node = _info_value(info, *path)
    try:
        value = float(node)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class TieredMarginModel:
    r"""Binance USDⓈ-M and COIN-M tiered margin: maintenance margin at the liquidation price.

    Source: Binance FAQ, "How to Calculate Liquidation Price of USDⓈ-M Contracts" and "How to
    Calculate Liquidation Price of COIN-M Contracts" (binance.com, Support, FAQ); brackets
    from ``GET /fapi/v1/leverageBracket`` (ccxt ``fetch_leverage_tiers``).

    For a notional :math:`N` (quote currency for linear, coin for inverse contracts) in tier
    :math:`n` of the leverage-bracket table:

    .. math::

        \mathrm{IM} = N / \ell, \qquad \ell \le \mathrm{maxLeverage}_n

        \mathrm{MM} = N \cdot \mathrm{mmr}_n - \mathrm{cum}_n

    Linear contracts: :math:`N = q\,c\,x`, PnL :math:`= s\,q\,c\,(x - EP)`. Inverse contracts:
    :math:`N = q\,c / x` (coin), PnL :math:`= s\,q\,c\,(1/EP - 1/x)` (coin).

    Liquidation price, one-way mode, side :math:`s`, quantity :math:`Q`:

    .. math::

        LP = \frac{WB - TMM + UPNL + \mathrm{cum} - s\,Q\,EP}{Q\,\mathrm{mmr} - s\,Q}

    :math:`WB` is the cross wallet balance (cross) or the position's isolated wallet
    (isolated, :meth:`position_margin`); :math:`TMM` and :math:`UPNL` are the maintenance
    margin and unrealized PnL of all *other* cross positions (zero when isolated). Hedge mode
    adds the long and short legs of the symbol, each with its own bracket:

    .. math::

        LP = \frac{WB - TMM + UPNL + \mathrm{cum}_L + \mathrm{cum}_S - Q_L EP_L + Q_S EP_S}
                  {Q_L\,\mathrm{mmr}_L + Q_S\,\mathrm{mmr}_S - Q_L + Q_S}

    COIN-M:

    .. math::

        LP = \frac{Q\,\mathrm{mmr} + s\,Q}{WB + \mathrm{cum} + s\,Q / EP}

    The bracket (``mmr``, ``cum``) is that of the notional *at the liquidation price*; the
    solver in this module finds it exactly.

    Account figures: equity :math:`= WB_{total} + \sum UPNL`, margin ratio
    :math:`= \sum MM / \text{equity}`, effective leverage :math:`= \sum |N| / \text{equity}`.

    Subclasses change what the liquidation threshold is (:meth:`liquidation_tiers`,
    :meth:`liquidation_price`) and how a venue's position payload states its margin
    (:meth:`position_margin`).
    """

    family: ClassVar[str] = "binance"
    supports_hedge_mode: ClassVar[bool] = True
    #: whether the liquidation rule takes maintenance margin at the entry value (Bybit,
    #: KuCoin) instead of at the liquidation price; the normalization kernels read it
    mm_at_entry: ClassVar[bool] = False

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

    def tier_index(self, market: MarketSpec, contracts: float, price: float) -> int:
        """Tier of a position: by its notional, or by its size where bounds are contracts."""
        if market.tiers_in_contracts:
            return market.tiers.index(abs(contracts))
        return market.tiers.index(self.notional(market, contracts, price))

    def maintenance_margin(self, market: MarketSpec, contracts: float, price: float) -> float:
        """The venue's maintenance margin ``N · mmr − cum`` for the tier of the position."""
        k = self.tier_index(market, contracts, price)
        t = market.tiers
        return self.notional(market, contracts, price) * float(t.mmr[k]) - float(t.cum[k])

    def max_leverage(self, market: MarketSpec, contracts: float, price: float) -> float:
        """Largest leverage setting the tier of the position allows."""
        return float(market.tiers.max_leverage[self.tier_index(market, contracts, price)])

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
        max_leverage = self.max_leverage(market, contracts, price)
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

    # ------------------------------------------------------------------ liquidation rule

    def fee_to_close(self, market: MarketSpec) -> float:
        """Fee rate the liquidation threshold adds to the maintenance rate (none here)."""
        del market  # a venue's hook
        return 0.0

    def liquidation_tiers(self, market: MarketSpec, price: float) -> TierTable:
        r"""The schedule the liquidation rule holds the margin balance to, for the kernels.

        .. math:: \mathrm{MM}_{liq}(N) = N\,(\mathrm{mmr}_k + f) - \mathrm{cum}_k

        with :math:`f` = :meth:`fee_to_close`, by notional. The normalization kernels solve
        for quantities on a schedule continuous in the notional. Where the venue's is not (a
        whole-position rate that jumps at a tier bound, or tiers bounded in contracts, as on
        OKX), the table stops at the first such bound, converted to a notional at ``price``:
        sizing on it keeps a position inside the tiers where the rule is the kernels' (its
        cap is the largest notional, ``TIER_LIMIT``).
        """
        t, fee = market.tiers, self.fee_to_close(market)
        if market.tiers_in_contracts:
            keep, cap = 1, market.notional(float(t.cap[0]), price)
        else:
            mm_below = t.floor[1:] * t.mmr[:-1] - t.cum[:-1]
            mm_above = t.floor[1:] * t.mmr[1:] - t.cum[1:]
            jumps = np.flatnonzero(np.abs(mm_above - mm_below) > 1e-6 * (1.0 + np.abs(mm_above)))
            keep = int(jumps[0]) + 1 if len(jumps) else len(t)
            cap = float(t.cap[keep - 1])
        if keep == len(t) and fee == 0.0 and not market.tiers_in_contracts:
            return t
        caps = t.cap[:keep].copy()
        if keep < len(t) or market.tiers_in_contracts:
            cap *= 1.0 - 1e-12  # a position at the bound is in the next tier: stay below it
        caps[-1] = cap
        return TierTable(
            floor=t.floor[:keep],
            cap=caps,
            mmr=t.mmr[:keep] + fee,
            cum=t.cum[:keep],
            max_leverage=t.max_leverage[:keep],
        )

    def position_tiers(self, market: MarketSpec, contracts: float) -> TierTable:
        """The liquidation schedule a position of ``contracts`` is solved on, by notional.

        Every tier, each rate plus :meth:`fee_to_close`; where tiers are bounded in contracts
        (OKX), the one tier that size falls in, unbounded in notional.
        """
        t, fee = market.tiers, self.fee_to_close(market)
        if market.tiers_in_contracts:
            k = t.index(abs(contracts))
            t = TierTable(
                floor=np.array([0.0]),
                cap=np.array([math.inf]),
                mmr=t.mmr[k : k + 1],
                cum=t.cum[k : k + 1],
                max_leverage=t.max_leverage[k : k + 1],
            )
        if fee == 0.0:
            return t
        return TierTable(
            floor=t.floor, cap=t.cap, mmr=t.mmr + fee, cum=t.cum, max_leverage=t.max_leverage
        )

    def liquidation_margin(self, market: MarketSpec, contracts: float, price: float) -> float:
        """Maintenance margin plus fee to close: what the liquidation rule compares against."""
        notional = self.notional(market, contracts, price)
        t = self.position_tiers(market, contracts)
        return t.maintenance_margin(notional)

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
        tables = [self.position_tiers(market, leg.contracts) for leg in legs]
        return solve_liquidation(market, legs, balance, mark_price, tables)

    # ------------------------------------------------------------------ position payloads

    def position_margin(self, position: Position, pnl: float) -> float:
        """Margin held in an isolated position, unrealized PnL excluded (``WB`` above).

        Read, in order, from ``position_margin`` (ccxt's unified field), the venue's own field
        in ``info`` (:meth:`margin_from_info`), or ccxt's ``collateral`` less the unrealized PnL
        (``unrealized_pnl`` when given, else ``pnl``, the PnL at the mark): ccxt's
        ``collateral`` is margin plus unrealized PnL on every venue.

        Raises
        ------
        InvalidInput
            If none of them is given.
        """
        if position.position_margin is not None:
            return float(position.position_margin)
        from_info = self.margin_from_info(position.info or {})
        if from_info is not None:
            return from_info
        if position.collateral is not None:
            upnl = position.unrealized_pnl if position.unrealized_pnl is not None else pnl
            return float(position.collateral) - upnl
        raise InvalidInput(
            f"the isolated {position.symbol} position states no margin: give position_margin "
            "(margin held, PnL excluded) or collateral (margin plus unrealized PnL)",
            field="position_margin",
        )

    def liquidation_balance(self, market: MarketSpec, position: Position, margin: float) -> float:
        """The balance the liquidation formula takes for an isolated position's ``margin``.

        The margin itself here; a venue whose reported position margin holds more than the
        formula counts (Bybit's fee to close) overrides this.
        """
        del market, position  # a venue's hook
        return margin

    def margin_from_info(self, info: Mapping[str, Any]) -> float | None:
        """Binance: ``isolatedWallet`` of ``GET /fapi/v2/positionRisk``.

        ``isolatedMargin`` (ccxt's ``collateral``) adds the unrealized PnL to it.
        """
        wallet = _info_number(info, "isolatedWallet")
        return wallet if wallet else None

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
        specs = [
            markets[markets.resolve(p.symbol, field=f"account.positions[{i}].symbol")]
            for i, p in enumerate(acct.positions)
        ]
        settles = {s.settle for s in specs}
        if len(settles) > 1:
            raise InvalidInput(
                f"positions settle in {', '.join(sorted(settles))}: one account holds one settle "
                "currency; split it into one account per currency",
                field="positions",
            )
        self._check_position_mode(acct, specs)
        positions = list(zip(acct.positions, specs, strict=True))
        pnl = [
            self.unrealized_pnl(m, p.sign, p.contracts, p.entry_price, p.mark_price)
            for p, m in positions
        ]
        notional = [self.notional(m, p.contracts, p.mark_price) for p, m in positions]
        mm = [self.maintenance_margin(m, p.contracts, p.mark_price) for p, m in positions]
        liq_mm = [self.liquidation_margin(m, p.contracts, p.mark_price) for p, m in positions]
        equity = acct.wallet_balance + sum(pnl)
        if equity <= 0:
            raise InvalidInput(
                f"account equity (wallet_balance + unrealized PnL) is {equity:,.2f}: it must be "
                "positive (the account is already bankrupt)",
                field="wallet_balance",
                value=acct.wallet_balance,
            )
        margins = [
            self.position_margin(p, pnl[i]) if p.margin_mode == "isolated" else 0.0
            for i, (p, m) in enumerate(positions)
        ]
        cross_wallet = acct.wallet_balance - sum(margins)

        reports: list[PositionReport] = []
        for i, (pos, spec) in enumerate(positions):
            cap = self.max_leverage(spec, pos.contracts, pos.mark_price)
            leverage = pos.leverage
            if leverage is None:
                leverage = (
                    notional[i] / margins[i]
                    if pos.margin_mode == "isolated" and margins[i] > 0
                    else cap
                )
                leverage = min(leverage, cap)
            im = self.initial_margin(spec, pos.contracts, pos.mark_price, leverage)
            if pos.margin_mode == "isolated":
                legs = [Leg(pos.sign, pos.contracts, pos.entry_price)]
                balance = self.liquidation_balance(spec, pos, margins[i])
            else:
                cross = [j for j, q in enumerate(acct.positions) if q.margin_mode == "cross"]
                same = [j for j in cross if specs[j].symbol == spec.symbol]
                others = [j for j in cross if specs[j].symbol != spec.symbol]
                legs = [
                    Leg(
                        acct.positions[j].sign,
                        acct.positions[j].contracts,
                        acct.positions[j].entry_price,
                    )
                    for j in same
                ]
                balance = (
                    cross_wallet - sum(liq_mm[j] for j in others) + sum(pnl[j] for j in others)
                )
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

    Sources: Hyperliquid docs, "Margin tiers" and "Liquidations"
    (https://hyperliquid.gitbook.io/hyperliquid-docs/trading/margin-tiers,
    https://hyperliquid.gitbook.io/hyperliquid-docs/trading/liquidations).

    Tiers: each tier has a maximum leverage :math:`L_n`; maintenance margin rate is half the
    initial margin at that leverage and the deduction is built like Binance's ``cum``
    (:func:`levalign.markets.hyperliquid_tier_table`):

    .. math::

        \mathrm{mmr}_n = \frac{1}{2 L_n}, \qquad
        \mathrm{MM} = N\,\mathrm{mmr}_n - \mathrm{deduction}_n

    Liquidation price, side :math:`s`, size :math:`Q`, at the current price :math:`x_0`:

    .. math::

        LP = x_0 - s\,\frac{\text{margin\_available}}{Q\,(1 - l\,s)}, \qquad l = \mathrm{mmr}

    with ``margin_available = isolated_margin − MM`` (isolated) or
    ``account_value − MM_total`` (cross), both at :math:`x_0`. Writing the margin balance at
    :math:`x_0` as :math:`B_0 = B + s\,Q\,(x_0 - EP)` and multiplying out,

    .. math::

        LP = \frac{Q\,x_0 - s\,(B_0 + \mathrm{cum})}{Q\,(1 - s\,\mathrm{mmr})}
           = \frac{B + \mathrm{cum} - s\,Q\,EP}{Q\,\mathrm{mmr} - s\,Q},

    which is :class:`TieredMarginModel`'s formula (and the normalization kernel's) with
    maintenance margin at the liquidation price; the docs' formula takes the tier at
    :math:`x_0`, this model the tier at the liquidation notional (they differ only for a
    position whose liquidation crosses a tier bound: 150M USDC on BTC in the bundled preset).

    ccxt's ``collateral`` of an isolated position is ``marginUsed``, which includes the
    unrealized PnL; the margin at entry is ``marginUsed − unrealizedPnl``
    (:meth:`margin_from_info`, ccxt's ``positionMargin``).
    """

    family: ClassVar[str] = "hyperliquid"
    supports_hedge_mode: ClassVar[bool] = False

    @staticmethod
    def tier_table(
        lower_bounds: Sequence[float], max_leverages: Sequence[float], *, symbol: str = "?"
    ) -> TierTable:
        """Tier table from Hyperliquid's ``(lower notional bound, max leverage)`` steps."""
        return hyperliquid_tier_table(lower_bounds, max_leverages, symbol=symbol)

    def margin_from_info(self, info: Mapping[str, Any]) -> float | None:
        """``marginUsed − unrealizedPnl`` of a ``clearinghouseState`` isolated position."""
        if _info_value(info, "position", "leverage", "type") != "isolated":
            return None
        used = _info_number(info, "position", "marginUsed")
        upnl = _info_number(info, "position", "unrealizedPnl")
        return None if used is None or upnl is None else used - upnl


class BybitMarginModel(TieredMarginModel):
    r"""Bybit: maintenance margin taken at the position's *entry* value.

    Sources: Bybit Help Center, "Liquidation Price (USDT Contract)"
    (https://www.bybithelp.com/HelpCenterKnowledge/bybitHC_Article?language=en_US&id=000001067,
    as freqtrade's bybit.py cites it) and "Liquidation Price (Inverse Contract)"; isolated
    margin, one-way mode:

    .. math::

        \text{linear:}\quad LP = EP - s\,\frac{B - \mathrm{MM}(Q\,EP)}{Q}

        \text{inverse:}\quad \frac{1}{LP} = \frac{1}{EP} + s\,\frac{B - \mathrm{MM}(Q/EP)}{Q}

    with :math:`\mathrm{MM}(N) = N\,\mathrm{mmr} - \text{deduction}` at the entry value
    :math:`N` (quote for linear, coin for inverse), :math:`B` the initial margin plus any
    margin added (:math:`Q` in USD for inverse contracts). Binance instead takes maintenance
    margin at the liquidation price; on Bybit's own example (1 BTC long at 20,000, 50x, mmr
    0.5%) this model gives Bybit's 19,700 where the Binance convention gives 19,698.49.

    Bybit's position margin (``positionBalance``, ccxt's ``positionMargin``) also holds the
    fee to close at the bankruptcy price, which the formula's :math:`B` leaves out. With taker
    rate :math:`f` and :math:`PM` the reported position margin,
    :math:`PM = B + f\,Q\,x_{bust}` with :math:`x_{bust} = EP - s\,B/Q` (linear) or
    :math:`1/x_{bust} = 1/EP + s\,B/Q` (inverse), so

    .. math::

        B = \frac{PM - f\,Q\,EP}{1 - s f} \ \text{(linear)}, \qquad
        B = \frac{PM - f\,Q/EP}{1 + s f} \ \text{(inverse)}.

    Hedge-mode pairs use the exact solver of :class:`TieredMarginModel`.
    """

    family: ClassVar[str] = "bybit"
    mm_at_entry: ClassVar[bool] = True
    #: Bybit's base taker rate for perpetuals (Bybit "Trading Fee Structure", non-VIP)
    default_taker_fee: ClassVar[float] = 0.00055
    reserves_fee_to_close: ClassVar[bool] = True

    def liquidation_price(
        self,
        market: MarketSpec,
        legs: Sequence[Leg],
        balance: float,
        mark_price: float,
    ) -> float | None:
        """Liquidation price with the maintenance margin at the entry value (see class)."""
        if len(legs) != 1:
            return super().liquidation_price(market, legs, balance, mark_price)
        leg = legs[0]
        qty = abs(leg.contracts) * market.contract_size
        mm = self.maintenance_margin(market, leg.contracts, leg.entry_price)
        if market.linear:
            lp = leg.entry_price - leg.side * (balance - mm) / qty
            return lp if lp > 0 else None
        inverse_lp = 1.0 / leg.entry_price + leg.side * (balance - mm) / qty
        return 1.0 / inverse_lp if inverse_lp > 0 else None

    def liquidation_balance(self, market: MarketSpec, position: Position, margin: float) -> float:
        """The formula's :math:`B`: the reported position margin less the fee to close."""
        if not self.reserves_fee_to_close:
            return margin
        fee = market.taker_fee if market.taker_fee is not None else self.default_taker_fee
        qty = position.contracts * market.contract_size
        s = position.sign
        if market.linear:
            return (margin - fee * qty * position.entry_price) / (1.0 - s * fee)
        return (margin - fee * qty / position.entry_price) / (1.0 + s * fee)

    def margin_from_info(self, info: Mapping[str, Any]) -> float | None:
        """``positionBalance`` of ``GET /v5/position/list`` (empty or 0 when not stated)."""
        balance = _info_number(info, "positionBalance")
        return balance if balance else None


class KucoinMarginModel(BybitMarginModel):
    r"""KuCoin Futures: maintenance margin at the entry value, as Bybit.

    Source: KuCoin Help Center, "How to Calculate Futures Liquidation Price" (kucoin.com,
    Support), isolated margin:

    .. math::

        \text{linear long:}\quad LP = EP\,(1 - \mathrm{IMR} + \mathrm{MMR})
            - \frac{\text{extra margin}}{Q}, \qquad
        \text{short:}\quad LP = EP\,(1 + \mathrm{IMR} - \mathrm{MMR})
            + \frac{\text{extra margin}}{Q}

    that is :math:`LP = EP - s\,(B - Q\,EP\,\mathrm{MMR}) / Q` with :math:`B` the initial plus
    extra margin; inverse contracts the same in :math:`1/x` (:class:`BybitMarginModel`).
    KuCoin's rate applies to the whole position (risk-limit levels, no deduction). KuCoin's
    position margin holds no fee to close.
    """

    family: ClassVar[str] = "kucoin"
    reserves_fee_to_close: ClassVar[bool] = False

    def margin_from_info(self, info: Mapping[str, Any]) -> float | None:
        """``posMargin`` of KuCoin's ``GET /api/v1/positions`` (isolated only)."""
        if info.get("crossMode") is True or info.get("marginMode") == "CROSS":
            return None
        margin = _info_number(info, "posMargin")
        return margin if margin else None


class FeeTieredMarginModel(TieredMarginModel):
    r"""Tiered margin whose liquidation threshold adds the taker fee to close (OKX, Bitget, Gate).

    Liquidation comes when the margin balance falls to the maintenance margin plus the fee to
    close the position at that price:

    .. math::

        B + s\,Q\,(LP - EP) = Q\,LP\,(\mathrm{mmr}_k + f) - \mathrm{cum}_k, \qquad
        LP = \frac{B + \mathrm{cum}_k - s\,Q\,EP}{Q\,(\mathrm{mmr}_k + f - s)}

    (linear; inverse contracts the same in the margin variable :math:`1/x`), :math:`f` the
    market's taker rate (ccxt ``taker``) or the venue's base rate. This is
    :class:`TieredMarginModel`'s rule on the table :math:`\mathrm{mmr}' = \mathrm{mmr} + f`
    (:meth:`liquidation_tiers`), which the normalization kernel is handed. The reported
    maintenance margin is the venue's, fee excluded.
    """

    family: ClassVar[str] = "fee"
    default_taker_fee: ClassVar[float] = 0.0

    def fee_to_close(self, market: MarketSpec) -> float:
        """The market's taker rate, else the venue's base rate."""
        return market.taker_fee if market.taker_fee is not None else self.default_taker_fee


class OkxMarginModel(FeeTieredMarginModel):
    r"""OKX perpetual and expiry swaps, isolated or cross (single-currency margin).

    Source: OKX Help Center, "VI. Introduction to the isolated mode of Single/Multi-currency
    Portfolio margin"
    (https://www.okx.com/support/hc/en-us/articles/360053909592, as freqtrade cites it):

    .. math::

        LP = \frac{\text{margin} - s\,\mathrm{ctVal}\,|pos|\,\mathrm{avgPx}}
                  {\mathrm{ctVal}\,|pos|\,(\mathrm{mmr} + f - s)}

    the rule of :class:`FeeTieredMarginModel` with no maintenance amount: OKX's maintenance
    margin is the whole position at its tier's rate. OKX's position tiers are bounded in
    *contracts* (``minSz``/``maxSz``, which ccxt reports as ``minNotional``/``maxNotional``):
    the tier of a position depends on its size only. Base taker rate 0.05% (OKX fee schedule,
    regular users, perpetuals). ccxt's ``positionMargin`` is OKX's ``margin``.
    """

    family: ClassVar[str] = "okx"
    default_taker_fee: ClassVar[float] = 0.0005

    def margin_from_info(self, info: Mapping[str, Any]) -> float | None:
        """``margin`` of ``GET /api/v5/account/positions`` (isolated; empty when cross)."""
        margin = _info_number(info, "margin")
        return margin if margin else None


class BitgetMarginModel(FeeTieredMarginModel):
    r"""Bitget USDT-M futures, isolated.

    Source: Bitget Help Center, "Liquidation price calculation"
    (https://www.bitget.com/support/articles/12560603808759):

    .. math::

        LP = \frac{\text{position margin} - Q\,EP\,s}
                  {Q\,(\mathrm{MMR} + \mathrm{TakerFeeRatio} - s)}

    the rule of :class:`FeeTieredMarginModel` with no maintenance amount (the tier's rate on
    the whole position). Base taker rate 0.06% (Bitget futures fee schedule, regular users).
    """

    family: ClassVar[str] = "bitget"
    default_taker_fee: ClassVar[float] = 0.0006


class GateMarginModel(FeeTieredMarginModel):
    r"""Gate perpetual futures, isolated.

    Source: Gate Help Center, "Liquidation Price and Bankruptcy Price"
    (https://www.gate.io/help/futures/futures/27724/liquidation-price-bankruptcy-price):

    .. math::

        LP = \frac{EP - s\,\text{margin} / (\text{multiplier} \cdot \text{size})}
                  {1 - s\,(\mathrm{MMR} + \text{taker rate})}

    the rule of :class:`FeeTieredMarginModel`: dividing through by :math:`Q` gives the form
    above with no maintenance amount; where Gate's risk-limit tiers state a ``deduction`` it
    is the ``cum`` of the table. Base taker rate 0.05% (Gate futures fee schedule, VIP 0).
    """

    family: ClassVar[str] = "gate"
    default_taker_fee: ClassVar[float] = 0.0005


_MODELS: dict[str, TieredMarginModel] = {
    model.family: model
    for model in (
        TieredMarginModel(),
        BybitMarginModel(),
        KucoinMarginModel(),
        OkxMarginModel(),
        BitgetMarginModel(),
        GateMarginModel(),
        HyperliquidMarginModel(),
    )
}


def margin_model(family: str) -> TieredMarginModel:
    """The margin model of an exchange family (a family of ``EXCHANGE_FAMILIES``).

    Raises
    ------
    ConfigurationError
        If no model has that family name.
    """
    try:
        return _MODELS[family]
    except KeyError:
        raise ConfigurationError(
            f"no margin model for exchange family {family!r}; known: {', '.join(sorted(_MODELS))}",
            field="exchange",
            value=family,
        ) from None


def liquidation_market(market: MarketSpec, price: float) -> MarketSpec:
    """``market`` with the tier table its venue's liquidation rule prices with at ``price``.

    :meth:`TieredMarginModel.liquidation_tiers` of the market's family: the same table on
    Binance and Hyperliquid, the maintenance rate plus the taker fee to close on OKX, Bitget
    and Gate (OKX: its first tier). The normalization kernels size on it, so that a sized
    position's liquidation price is the one :func:`margin_report` gives.

    Bybit and KuCoin take maintenance margin at the *entry* value, which no tier table
    expresses: their table is returned unchanged, and the kernels read the model's
    :attr:`~TieredMarginModel.mm_at_entry` (a flag of the event vector) and solve the buffer
    and the liquidation price with maintenance margin at the entry notional, by
    :meth:`BybitMarginModel.liquidation_price`'s formula.

    One limit, where the venue's rule is not the kernels' form: a whole-position rate that
    jumps at a tier bound (no maintenance amount, Bitget and KuCoin tables) is handed over
    only up to that bound, so a short whose liquidation notional crosses it (or, on KuCoin, a
    position whose entry notional does) is priced at the lower tier's rate.
    """
    model = margin_model(market.margin_family)
    tiers = model.liquidation_tiers(market, price)
    return market if tiers is market.tiers else dataclasses.replace(market, tiers=tiers)


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


def solve_liquidation(
    market: MarketSpec,
    legs: Sequence[Leg],
    balance: float,
    mark_price: float,
    tables: Sequence[TierTable] | None = None,
) -> float | None:
    """The root of ``g`` (module docstring) nearest the mark; leg ``i`` on ``tables[i]``.

    ``tables`` defaults to the market's tiers for every leg.
    """
    if tables is None:
        tables = [market.tiers] * len(legs)
    held = [(leg, t) for leg, t in zip(legs, tables, strict=True) if leg.contracts]
    if not held:
        return None
    qty = [abs(leg.contracts) * market.contract_size for leg, _ in held]
    if market.linear:
        coef = [leg.side * q for (leg, _), q in zip(held, qty, strict=True)]
        ref = [leg.entry_price for leg, _ in held]
    else:
        coef = [-leg.side * q for (leg, _), q in zip(held, qty, strict=True)]
        ref = [1.0 / leg.entry_price for leg, _ in held]
    breaks = sorted(
        {
            0.0,
            *(float(f) / q for (_, t), q in zip(held, qty, strict=True) for f in t.floor[1:]),
            math.inf,
        }
    )
    fixed = balance - sum(c * r for c, r in zip(coef, ref, strict=True))

    def g(v: float) -> float:
        return (
            balance
            + sum(c * (v - r) for c, r in zip(coef, ref, strict=True))
            - sum(t.maintenance_margin(q * v) for (_, t), q in zip(held, qty, strict=True))
        )

    # a whole-position rate jumps at a tier bound: g may change sign there, not inside a tier
    roots = [
        bound if market.linear else 1.0 / bound
        for bound in breaks[1:-1]
        if g(bound * (1 - 1e-12)) * g(bound) < 0
    ]
    for lo, hi in itertools.pairwise(breaks):
        probe = lo * 2 + 1 if math.isinf(hi) else (lo + hi) / 2
        tiers = [(t, t.index(q * probe)) for (_, t), q in zip(held, qty, strict=True)]
        alpha = fixed + sum(float(t.cum[k]) for t, k in tiers)
        beta = sum(coef) - sum(q * float(t.mmr[k]) for (t, k), q in zip(tiers, qty, strict=True))
        if beta == 0:
            continue
        v = -alpha / beta
        if lo * (1 - 1e-12) <= v <= hi * (1 + 1e-12) and v > 0:
            roots.append(v if market.linear else 1.0 / v)
    if not roots:
        # safe at every price, or below maintenance at every price: then liquidation is now
        return mark_price if g(mark_price if market.linear else 1.0 / mark_price) < 0 else None
    return min(roots, key=lambda x: abs(x - mark_price))
