r"""The paper venue: simulated execution and margin for a cohort of followers in one market.

Backtests execute every follower's orders here, and the live engine uses it for
paper trading. The venue holds N followers' accounts in ONE linear market as numpy columns
and runs three kernels over them (:mod:`levalign.venues._paper_kernels`): fills, funding,
and the walk over price bars with liquidation and de-risking.

Accounts
--------
Per follower: ``wallet_balance`` :math:`W` (settle currency, realized, isolated collateral
included), ``position`` :math:`q` (signed contracts), ``entry_price`` :math:`EP`,
``collateral`` :math:`C` (isolated margin posted; 0 for cross), ``margin_mode`` (codes of
:data:`levalign.normalize.MARGIN_MODES`), and running totals ``fees`` :math:`F`, ``funding``
:math:`\Phi`, ``slippage``, ``realized_pnl`` :math:`R`, ``liquidations``,
``liquidation_losses`` :math:`L`, ``peak_equity``, ``max_drawdown``, ``bars_in_market``.
With contract size :math:`c`, equity at a mark :math:`m` and free balance are

.. math:: E(m) = W + q\,c\,(m - EP), \qquad \text{free} = W - C.

Accounting identity, per follower, from the venue's start to now (``accounting_residual``
returns its left side minus its right side, zero to floating rounding):

.. math:: E_{now} - E_{start} = R + (U_{now} - U_{start}) - F - \Phi - L

where :math:`U = q\,c\,(m - EP)` is the unrealized PnL. Slippage sits inside :math:`R` and
:math:`U` through the fill prices; the ``slippage`` column reports it separately as the
difference against fills at the unslipped price.

Fills
-----
An order of side :math:`s` (+1 buy, −1 sell) and :math:`a` contracts at reference price
:math:`p` fills at

.. math:: x = p\,(1 + s\,\delta), \qquad
          \delta = 10^{-4}\Big(b_0 + b_1 \sqrt{a\,c\,p / N_1}\Big)

(:class:`SlippageModel`: fixed half-spread :math:`b_0` bps plus square-root impact :math:`b_1`
bps at notional :math:`N_1`; the square-root law of Almgren, Thum, Hauptmann & Li, "Direct
estimation of equity market impact", Risk 18(7), 2005, and Tóth et al., "Anomalous price
impact and the critical nature of liquidity in financial markets", Phys. Rev. X 1, 021006,
2011). Slippage cost :math:`s\,(x - p)\,a\,c`; taker fee :math:`a\,c\,x\,f`. One-way netting:
against an opposite position the order first closes :math:`\min(a, |q|)` (a flip closes the
whole position, then opens the rest at :math:`x`), realizing
:math:`R \mathrel{+}= \operatorname{sign}(q)\,a_{close}\,c\,(x - EP)`; an increase moves the
entry to the size-weighted mean :math:`(|q|\,EP + a\,x) / (|q| + a)`. Isolated collateral is
released pro rata on a reduction (:math:`C \cdot (1 - a_{close}/|q|)`), fully on a close, and
the result's ``collateral`` column is posted from the free balance with an opening; a
``MARGIN_TOPUP`` row (no order) moves its ``collateral`` from the free balance to the
position. Fees and funding are paid from the free balance; what it cannot cover comes out of
the isolated collateral (Bybit Help Center, "Position Margin": funding "deducted from the
available balance ... if insufficient, from the position margin").

Liquidation
-----------
At every bar a long is liquidated when the bar's low reaches its liquidation price
:math:`LP`, a short when the high does. :math:`LP` comes from
:func:`levalign._margin_kernels.liquidation_price_one_leg` (isolated: collateral with the entry
price, Binance's one-way form; cross: the wallet balance with the entry price, the same root
as the account's margin balance at any mark with that mark as reference, which is how
:mod:`levalign.normalize` prices cross followers) and is recomputed only when a fill, top-up
or funding payment changes the follower. The position is closed at :math:`LP`, realizing
:math:`q\,c\,(LP - EP)`, and what margin is left at :math:`LP` — the position's maintenance
margin :math:`\mathrm{MM}(LP)` — goes to the insurance fund and is booked in
``liquidation_losses``: isolated, the position's collateral is lost in full (wallet falls by
:math:`C`); cross, the account's equity falls to that remainder, which is lost (wallet 0).
Sources: Binance, "Liquidation Protocol" (Binance Support FAQ 360033525271: a position still
margin-deficient is closed at the bankruptcy price and "a portion of the remaining collateral
... will go to the Insurance Fund"), Binance, "Insurance Fund" (FAQ 360033525371), and Binance
Academy, "How a Liquidation Order Is Executed: Liquidation Price vs. Bankruptcy Price" (the
order is triggered at the liquidation price and executed at the bankruptcy price, where the
margin is zero). Partial ("smart") liquidation and the clearance fee are not modelled: the
whole remaining margin is lost, which is the worst case of both. Liquidation executes at
:math:`LP` even when a bar gaps through it: losses beyond the margin are the insurance fund's.

De-risking
----------
A follower with a hard floor ``derisk_distance`` :math:`f` (its cohort column; none when
empty) is checked at every bar's mark (the close, or the ``mark`` given to :meth:`advance`),
after the liquidation test: when the liquidation distance there is below :math:`f`, i.e. a
long's mark is under :math:`LP/(1 - f)` or a short's above :math:`LP/(1 + f)`, the walk sizes
:func:`levalign._derisk_kernel.derisk_order` at that mark (the kernel behind
:func:`levalign.normalize.derisk`) and fills it on the spot like any order: a reduce-only cut
back to :math:`\max(f, \text{min\_liq\_distance})` from liquidation, with fees and slippage,
the freed isolated margin posted back to what remains; or, with ``derisk = "add_margin"``, a
top-up from the free balance first. Checking at the close (what a copier polling each bar
sees) never uses a price from inside the bar before it happened; a bar whose low goes from
outside the floor through the liquidation price still liquidates. ``derisks`` counts the
de-risking fills and top-ups.

Time
----
Timestamps are integer nanoseconds since the Unix epoch, UTC (or ``datetime64``), as
:class:`levalign.risk.ohlc.OHLC` keeps them; a bar's timestamp is its open time. Bars must be
strictly increasing and later than every bar already walked and no earlier than the last
fill; fills and funding may not go back in time.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from levalign._codes import DR_ADD_MARGIN
from levalign.errors import ConfigurationError, InvalidInput
from levalign.markets import MarketSpec
from levalign.normalize import MARGIN_MODES, Cohort, NormalizeResult, Reason, allocate_result
from levalign.risk.ohlc import OHLC, timestamps_ns
from levalign.venues import _paper_kernels as vk
from levalign.venues.base import Ack, Lookup, OrderRequest

__all__ = [
    "AdvanceResult",
    "ExecutionReport",
    "PaperVenue",
    "SlippageModel",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_ISOLATED = MARGIN_MODES.index("isolated")
_NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class SlippageModel:
    r"""Fill price model: fixed basis points plus optional square-root impact.

    A buy (:math:`s = +1`) or sell (:math:`s = -1`) of notional :math:`N` at reference price
    :math:`p` fills at

    .. math:: x = p\,(1 + s\,\delta), \qquad
              \delta = 10^{-4}\Big(\text{fixed\_bps}
              + \text{impact\_bps}\,\sqrt{N / \text{impact\_notional}}\Big)

    Buys pay more, sells receive less. The square-root impact follows Almgren et al. (2005)
    and Tóth et al. (2011), see the module docstring; ``impact_bps`` is the impact of an order
    of ``impact_notional``.

    Raises
    ------
    InvalidInput
        A negative or non-finite ``fixed_bps`` or ``impact_bps``, or ``impact_notional`` not a
        positive finite number.
    """

    fixed_bps: float = 1.0
    impact_bps: float = 0.0
    impact_notional: float = 1_000_000.0

    def __post_init__(self) -> None:
        for name in ("fixed_bps", "impact_bps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise InvalidInput(
                    f"slippage {name} must be a finite number of basis points >= 0, got {value}",
                    field=f"slippage.{name}",
                    value=value,
                )
        if not (math.isfinite(self.impact_notional) and self.impact_notional > 0.0):
            raise InvalidInput(
                "slippage impact_notional must be a positive notional (settle currency), got "
                f"{self.impact_notional}",
                field="slippage.impact_notional",
                value=self.impact_notional,
            )


DEFAULT_SLIPPAGE = SlippageModel()


@dataclass(frozen=True)
class ExecutionReport:
    """Per-follower outcome of :meth:`PaperVenue.execute` (one row per follower).

    ``fill_price`` is NaN where nothing was filled. ``flags`` holds bits: 1 filled,
    2 reduce-only amount clipped to the position, 4 reduce-only order rejected (nothing to
    reduce), 8 free balance short of the collateral asked (what there was was posted),
    16 margin top-up, 32 a charge taken from the isolated collateral.
    """

    timestamp: int
    price: float
    fill_price: FloatArray
    fee: FloatArray
    slippage: FloatArray
    realized_pnl: FloatArray
    flags: NDArray[np.uint8]

    FILLED = vk.X_FILLED
    REDUCE_ONLY_CLIPPED = vk.X_REDUCE_ONLY_CLIPPED
    REDUCE_ONLY_REJECTED = vk.X_REDUCE_ONLY_REJECTED
    COLLATERAL_SHORT = vk.X_COLLATERAL_SHORT
    TOPUP = vk.X_TOPUP
    CHARGED_COLLATERAL = vk.X_CHARGED_COLLATERAL

    @property
    def filled(self) -> int:
        """Number of followers with a fill."""
        return int(np.count_nonzero(self.flags & vk.X_FILLED))


@dataclass(frozen=True)
class AdvanceResult:
    """What :meth:`PaperVenue.advance` saw, per follower and per bar.

    Attributes
    ----------
    timestamp
        The bars' open times (ns).
    liquidated_bar
        Per follower, the index of the bar in which it was liquidated, −1 if it was not (a
        follower can be liquidated at most once per call: it is flat afterwards).
    liquidations_per_bar
        Number of followers liquidated in each bar.
    group_equity, group_notional
        ``(groups, bars)`` sums of equity and of absolute notional at each bar's mark over the
        followers of each group, when ``groups`` was given; else None.
    track_equity, track_position
        ``(tracked, bars)`` equity and position (contracts) of the followers named in
        ``track``, in that order, when given; else None.
    """

    timestamp: IntArray
    liquidated_bar: IntArray
    liquidations_per_bar: IntArray
    group_equity: FloatArray | None = None
    group_notional: FloatArray | None = None
    track_equity: FloatArray | None = None
    track_position: FloatArray | None = None


@dataclass(eq=False)
class PaperVenue:
    """A simulated exchange account per follower, in one linear market (see the module).

    Build one with :meth:`from_cohort`. The state columns are public numpy arrays, one row per
    follower in the cohort's order; treat them as read-only and change them only through
    :meth:`execute`, :meth:`advance` and :meth:`apply_funding`.
    """

    ids: NDArray[Any]
    market: MarketSpec
    taker_fee: float
    slippage_model: SlippageModel
    margin_mode: NDArray[np.int8]
    wallet_balance: FloatArray
    position: FloatArray
    entry_price: FloatArray
    collateral: FloatArray
    liquidation_price: FloatArray
    leverage: FloatArray
    residual: FloatArray
    fees: FloatArray
    funding: FloatArray
    slippage: FloatArray
    realized_pnl: FloatArray
    liquidations: IntArray
    liquidation_losses: FloatArray
    peak_equity: FloatArray
    max_drawdown: FloatArray
    bars_in_market: IntArray
    equity_start: FloatArray
    unrealized_start: FloatArray
    derisk_distance: FloatArray
    derisk_restore: FloatArray
    derisk_add_margin: NDArray[np.bool_]
    derisks: IntArray
    mark_price: float = math.nan
    bars_seen: int = 0
    last_bar_time: int | None = None
    clock: int | None = None
    _cohort: Cohort | None = field(default=None, repr=False)
    _orders: dict[str, Ack] = field(default_factory=dict, repr=False)
    _rows: dict[str, int] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_cohort(  # noqa: PLR0913 - keyword-only options, each documented
        cls,
        cohort_or_table: Any,
        market: MarketSpec,
        *,
        taker_fee: float = 0.0005,
        slippage: SlippageModel = DEFAULT_SLIPPAGE,
        mark: float | None = None,
        timestamp: int | np.datetime64 | None = None,
    ) -> PaperVenue:
        """Open one paper account per follower of a cohort.

        Parameters
        ----------
        cohort_or_table
            A :class:`levalign.normalize.Cohort` or any table it reads (``id`` and ``equity``
            required; ``position``, ``entry_price``, ``collateral``, ``margin_mode`` and the
            profile columns optional). Equity is the capital allocated to the lead.
        market
            The followers' market; must be linear.
        taker_fee
            Fee rate on every fill's notional (0.0005 = 5 bps, Binance USDⓈ-M regular taker).
        slippage
            Fill price model.
        mark
            Price at which the cohort's equity is stated, for followers that already hold a
            position: their wallet balance is ``equity − q·c·(mark − EP)``. Default: each
            position's entry price (wallet = equity).
        timestamp
            The venue's start time (ns), if fills before the first bar must be checked.

        Returns
        -------
        PaperVenue

        Raises
        ------
        ConfigurationError
            The market is inverse (coin-margined).
        InvalidInput
            A negative ``taker_fee``; a follower with non-finite or negative equity, a position
            without a positive entry price, negative collateral or collateral above its wallet
            balance, or an unknown margin mode (the message names the row); a bad ``mark``.
        """
        if not market.linear:
            raise ConfigurationError(
                f"{market.symbol} is an inverse (coin-margined) market: the paper venue "
                "supports linear markets; pick the USDⓈ-M (linear) market of the symbol",
                field="market",
                value=market.symbol,
            )
        if not (math.isfinite(taker_fee) and taker_fee >= 0.0):
            raise InvalidInput(
                f"taker_fee must be a fee rate >= 0 (0.0005 = 5 bps), got {taker_fee}",
                field="taker_fee",
                value=taker_fee,
            )
        cohort = Cohort.from_table(cohort_or_table)
        n = len(cohort)
        f = cohort.floats
        equity = f["equity"].copy()
        position = f["position"].copy()
        entry = f["entry_price"].copy()
        collateral = f["collateral"].copy()
        mode = cohort.codes["margin_mode"].copy()
        _check_rows(equity, position, entry, collateral, mode)
        if mark is not None:
            _check_price(mark, "mark")
        held = position != 0.0
        entry[~held] = math.nan
        isolated = mode == _ISOLATED
        collateral[~isolated | ~held] = 0.0
        ref = float(mark) if mark is not None else math.nan
        upnl = np.zeros(n)
        if mark is not None:
            upnl = vk.unrealized_pnl(position, entry, ref, market.contract_size)
        wallet = equity - upnl
        over = isolated & (collateral > wallet)
        if over.any():
            i = int(np.argmax(over))
            raise InvalidInput(
                f"follower {cohort.ids[i]!r} (row {i}) posts collateral {collateral[i]:g} above "
                f"its wallet balance {wallet[i]:g}: isolated margin comes out of the wallet; "
                "lower the collateral or raise the equity",
                field=f"followers.collateral[{i}]",
                value=float(collateral[i]),
            )
        floor = f["derisk_distance"].copy()
        bad = ~(np.isnan(floor) | ((floor > 0.0) & (floor < 1.0))) | (cohort.codes["derisk"] < 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise InvalidInput(
                f"follower {cohort.ids[i]!r} (row {i}) has derisk_distance {floor[i]:g} or an "
                "unknown derisk action: the floor is a fraction of price in (0, 1), e.g. 0.03, "
                "or empty for none; derisk is 'reduce' or 'add_margin'",
                field=f"followers.derisk_distance[{i}]",
                value=float(floor[i]),
            )
        buffer = np.nan_to_num(f["min_liq_distance"], nan=0.0)
        t = market.tiers
        return cls(
            ids=cohort.ids,
            market=market,
            taker_fee=float(taker_fee),
            slippage_model=slippage,
            margin_mode=mode,
            wallet_balance=wallet,
            position=position,
            entry_price=entry,
            collateral=collateral,
            liquidation_price=vk.liquidation_prices(
                position,
                entry,
                wallet,
                collateral,
                isolated,
                market.contract_size,
                t.floor,
                t.cap,
                t.mmr,
                t.cum,
            ),
            leverage=np.full(n, math.nan),
            residual=f["residual"].copy(),
            fees=np.zeros(n),
            funding=np.zeros(n),
            slippage=np.zeros(n),
            realized_pnl=np.zeros(n),
            liquidations=np.zeros(n, dtype=np.int64),
            liquidation_losses=np.zeros(n),
            peak_equity=equity.copy(),
            max_drawdown=np.zeros(n),
            bars_in_market=np.zeros(n, dtype=np.int64),
            equity_start=equity,
            unrealized_start=upnl,
            derisk_distance=floor,
            derisk_restore=np.where(np.isnan(floor), math.nan, np.fmax(floor, buffer)),
            derisk_add_margin=cohort.codes["derisk"] == DR_ADD_MARGIN,
            derisks=np.zeros(n, dtype=np.int64),
            mark_price=ref,
            clock=None if timestamp is None else _as_ns(timestamp, "timestamp"),
            _cohort=cohort,
        )

    def __len__(self) -> int:
        return len(self.ids)

    def copy(self) -> PaperVenue:
        """An independent copy of the venue (what-if runs, benchmarks)."""
        return copy.deepcopy(self)

    @property
    def isolated(self) -> NDArray[np.bool_]:
        """True where the follower uses isolated margin."""
        return np.asarray(self.margin_mode == _ISOLATED, dtype=np.bool_)

    # ------------------------------------------------------------------ cohort view

    def cohort(self, mark: float | None = None) -> Cohort:
        """The venue's followers as a :class:`~levalign.normalize.Cohort`, state from the venue.

        The cohort the venue was built from (profiles unchanged), with the state columns the
        normalization kernel reads taken from the venue: ``equity`` is :math:`E(m)`,
        ``available_balance`` the free margin (isolated: wallet less collateral; cross: equity
        less the position's initial margin ``N / ℓ`` at the leverage setting of the last fill,
        the bracket's maximum by default), ``position``, ``entry_price``, ``collateral`` and
        ``residual`` (the last result's, for ``accumulate``) as held. Pass it to
        :func:`levalign.normalize.normalize` to size the next event on the venue's state.

        Parameters
        ----------
        mark
            Price to value positions at; default the last mark the venue saw.

        Raises
        ------
        InvalidInput
            Some follower holds a position and no mark is known or given.
        """
        if self._cohort is None:  # pragma: no cover - from_cohort always sets it
            raise InvalidInput("the venue was not built from a cohort", field="cohort")
        return self.update_cohort(self._cohort, mark)

    def update_cohort(self, cohort: Any, mark: float | None = None) -> Cohort:
        """Copy of ``cohort`` (same followers, same order) with the venue's state columns.

        Raises
        ------
        InvalidInput
            The cohort's ids differ from the venue's (the first differing row is named), or
            no mark is known (see :meth:`cohort`).
        """
        base = Cohort.from_table(cohort)
        _check_ids(base.ids, self.ids, "cohort.id")
        m = self._mark(mark)
        equity = self.wallet_balance + self._unrealized_at(m)
        floats = dict(base.floats)
        floats["equity"] = equity
        floats["available_balance"] = self._available(equity, m)
        floats["position"] = self.position.copy()
        floats["entry_price"] = self.entry_price.copy()
        floats["collateral"] = self.collateral.copy()
        floats["residual"] = self.residual.copy()
        codes = dict(base.codes)
        codes["margin_mode"] = self.margin_mode.copy()
        return Cohort(ids=base.ids, floats=floats, codes=codes, allowed=base.allowed)

    def _available(self, equity: FloatArray, mark: float) -> FloatArray:
        t = self.market.tiers
        return np.asarray(
            vk.free_balance(
                self.position,
                equity,
                self.wallet_balance,
                self.collateral,
                self.isolated,
                self.leverage,
                mark,
                self.market.contract_size,
                t.cap,
                t.max_leverage,
            ),
            dtype=np.float64,
        )

    def _mark(self, mark: float | None) -> float:
        if mark is not None:
            return _check_price(mark, "mark")
        if math.isnan(self.mark_price):
            if np.any(self.position != 0.0):
                raise InvalidInput(
                    "no mark price is known yet to value the open positions: pass mark=",
                    field="mark",
                )
            return math.nan
        return self.mark_price

    # ------------------------------------------------------------------ valuation

    def unrealized_pnl(self, mark: float | None = None) -> FloatArray:
        """``q · c · (mark − EP)`` per follower (0 when flat); ``mark`` as in :meth:`cohort`.

        Raises
        ------
        InvalidInput
            No mark known or given while positions are open, or a bad ``mark``.
        """
        return self._unrealized_at(self._mark(mark))

    def _unrealized_at(self, m: float) -> FloatArray:
        if math.isnan(m):  # no mark known: every follower is flat (see _mark)
            return np.zeros(len(self))
        return np.asarray(
            vk.unrealized_pnl(self.position, self.entry_price, m, self.market.contract_size),
            dtype=np.float64,
        )

    def equity(self, mark: float | None = None) -> FloatArray:
        r"""Equity per follower, :math:`E(m) = W + q\,c\,(m - EP)`.

        Raises
        ------
        InvalidInput
            As :meth:`unrealized_pnl`.
        """
        return np.asarray(self.wallet_balance + self.unrealized_pnl(mark), dtype=np.float64)

    def accounting_residual(self, mark: float | None = None) -> FloatArray:
        r"""Left minus right side of the accounting identity, per follower (0 up to rounding).

        .. math:: (E_{now} - E_{start})
                  - \big(R + (U_{now} - U_{start}) - F - \Phi - L\big)

        Raises
        ------
        InvalidInput
            As :meth:`unrealized_pnl`.
        """
        upnl = self.unrealized_pnl(mark)
        explained = (
            self.realized_pnl
            + (upnl - self.unrealized_start)
            - self.fees
            - self.funding
            - self.liquidation_losses
        )
        return np.asarray(
            (self.wallet_balance + upnl - self.equity_start) - explained, dtype=np.float64
        )

    def summary(self, mark: float | None = None) -> dict[str, NDArray[Any]]:
        r"""Per-follower results as columns.

        ``return`` is :math:`E_{now}/E_{start} - 1`; ``max_drawdown`` the largest fall from a
        running peak of equity, measured at bar marks,

        .. math:: \mathrm{MDD} = \max_t \frac{\max_{u \le t} E_u - E_t}{\max_{u \le t} E_u}

        (Magdon-Ismail & Atiya, "Maximum drawdown", Risk 17(10), 2004); ``time_in_market``
        the fraction of walked bars with a position open. Money columns are in the settle
        currency: ``fees``, ``funding`` (paid; negative: received), ``slippage`` (cost against
        fills at the reference price), ``realized_pnl``, ``unrealized_pnl``,
        ``liquidation_losses``.

        Raises
        ------
        InvalidInput
            As :meth:`unrealized_pnl`.
        """
        upnl = self.unrealized_pnl(mark)
        equity = self.wallet_balance + upnl
        with np.errstate(divide="ignore", invalid="ignore"):
            ret = np.where(self.equity_start > 0.0, equity / self.equity_start - 1.0, np.nan)
        in_market = (
            self.bars_in_market / self.bars_seen
            if self.bars_seen
            else np.zeros(len(self), dtype=np.float64)
        )
        return {
            "id": self.ids,
            "equity": equity,
            "return": ret,
            "max_drawdown": self.max_drawdown.copy(),
            "liquidations": self.liquidations.copy(),
            "time_in_market": np.asarray(in_market, dtype=np.float64),
            "bars_in_market": self.bars_in_market.copy(),
            "fees": self.fees.copy(),
            "funding": self.funding.copy(),
            "slippage": self.slippage.copy(),
            "realized_pnl": self.realized_pnl.copy(),
            "unrealized_pnl": upnl,
            "liquidation_losses": self.liquidation_losses.copy(),
            "position": self.position.copy(),
        }

    # ------------------------------------------------------------------ fills

    def execute(
        self, result: NormalizeResult, price: float, timestamp: int | np.datetime64
    ) -> ExecutionReport:
        """Fill a normalization result's orders at ``price`` (see "Fills" in the module).

        Rows with ``side == 0`` are untouched, except ``MARGIN_TOPUP`` rows, whose
        ``collateral`` moves from the free balance to the isolated position. ``reduce_only``
        orders never open or grow a position. The result's ``residual`` column is kept for the
        next :meth:`cohort`; a filled ``leverage`` becomes the follower's setting.

        Parameters
        ----------
        result
            Output of :func:`levalign.normalize.normalize` for this venue's followers, in the
            venue's order.
        price
            Reference fill price (the lead's fill or the market price), before slippage.
        timestamp
            Fill time (ns since the epoch, or ``datetime64``).

        Returns
        -------
        ExecutionReport

        Raises
        ------
        InvalidInput
            ``result`` is for another symbol or other followers (the first differing row of
            ``id`` is named), has a side outside −1/0/+1, a negative or non-finite amount or
            collateral on an order; ``price`` not positive and finite; ``timestamp`` earlier
            than the venue's clock.
        """
        if result.symbol != self.market.symbol:
            raise InvalidInput(
                f"the result is for {result.symbol} but this venue trades "
                f"{self.market.symbol}: normalize the event with the venue's market",
                field="result.symbol",
                value=result.symbol,
            )
        cols = result.columns
        _check_ids(np.asarray(cols["id"]), self.ids, "result.id")
        p = _check_price(price, "price")
        ts = self._tick(timestamp, "timestamp")
        side = np.asarray(cols["side"])
        amount = np.asarray(cols["amount"], dtype=np.float64)
        post = np.asarray(cols["collateral"], dtype=np.float64)
        reasons = np.asarray(cols["reasons"]).astype(np.int64)
        topup = (side == 0) & ((reasons & int(Reason.MARGIN_TOPUP)) != 0)
        _check_orders(side, amount, post, topup)
        n = len(self)
        out_fill = np.empty(n)
        out_fee = np.empty(n)
        out_slip = np.empty(n)
        out_pnl = np.empty(n)
        out_flags = np.empty(n, dtype=np.uint8)
        t = self.market.tiers
        s = self.slippage_model
        vk.execute_kernel(
            np.ascontiguousarray(side, dtype=np.int8),
            np.ascontiguousarray(amount),
            np.ascontiguousarray(cols["reduce_only"], dtype=np.bool_),
            np.ascontiguousarray(post),
            np.ascontiguousarray(topup),
            np.ascontiguousarray(cols["leverage"], dtype=np.float64),
            p,
            self.taker_fee,
            s.fixed_bps,
            s.impact_bps,
            s.impact_notional,
            self.market.contract_size,
            float(self.market.amount_step or 0.0),
            self.market.amount_decimals,
            t.floor,
            t.cap,
            t.mmr,
            t.cum,
            self.position,
            self.entry_price,
            self.wallet_balance,
            self.collateral,
            self.isolated,
            self.liquidation_price,
            self.leverage,
            self.fees,
            self.slippage,
            self.realized_pnl,
            out_fill,
            out_fee,
            out_slip,
            out_pnl,
            out_flags,
        )
        if "residual" in cols:
            self.residual[:] = np.asarray(cols["residual"], dtype=np.float64)
        self.mark_price = p
        self.clock = ts
        return ExecutionReport(
            timestamp=ts,
            price=p,
            fill_price=out_fill,
            fee=out_fee,
            slippage=out_slip,
            realized_pnl=out_pnl,
            flags=out_flags,
        )

    # ------------------------------------------------------------------ the order venue

    def submit(self, order: OrderRequest) -> Ack:
        """Fill one order at once (:class:`levalign.venues.base.OrderVenue`).

        The order fills through :meth:`execute` at the venue's last mark, with its fee and
        slippage, at the venue's clock. It is ``rejected`` with the reason when it is for
        another market, when no mark is known yet, when the mark is beyond its
        ``price_limit`` (a buy limited below the mark, a sell above it: an immediate-or-cancel
        order that cannot match), when the clock is past its ``expires_at_ms``, and when it
        is reduce-only with nothing to reduce. A client id the venue has seen returns the
        first answer; no second order is filled.

        Raises
        ------
        InvalidInput
            An account that is not one of the venue's followers, or an amount or price limit
            that is not a positive decimal.
        """
        seen = self._orders.get(order.client_id)
        if seen is not None:
            return seen
        row = self._row(order.account)
        amount = _positive_decimal(order.amount, "amount")
        limit = None if order.price_limit is None else _positive_decimal(order.price_limit, "price")
        mark = self.mark_price
        reason = None
        if order.symbol != self.market.symbol:
            reason = f"this venue trades {self.market.symbol}, not {order.symbol}"
        elif math.isnan(mark):
            reason = "no mark price is known yet"
        elif limit is not None and (mark > limit if order.side == "buy" else mark < limit):
            reason = f"could not match at the price limit {order.price_limit} (mark {mark})"
        elif self.clock is not None and self.clock > order.expires_at_ms * _NS_PER_MS:
            reason = "the order arrived after its expiry"
        ack = (
            Ack(order.client_id, "rejected", reason=reason)
            if reason is not None
            else self._fill_order(order, row, amount, mark)
        )
        self._orders[order.client_id] = ack
        return ack

    def _fill_order(self, order: OrderRequest, row: int, amount: float, mark: float) -> Ack:
        cols = allocate_result(len(self))
        for column in cols.values():
            column[:] = 0
        cols["leverage"][:] = math.nan
        cols["residual"][:] = self.residual
        cols["side"][row] = 1 if order.side == "buy" else -1
        cols["amount"][row] = amount
        cols["reduce_only"][row] = order.reduce_only
        result = NormalizeResult(
            event_id=order.client_id,
            event_kind="order",
            symbol=self.market.symbol,
            price=mark,
            columns={"id": self.ids, **cols},
        )
        before = float(self.position[row])
        out = self.execute(result, mark, 0 if self.clock is None else self.clock)
        flags = int(out.flags[row])
        if not flags & vk.X_FILLED:
            reason = (
                "reduce-only order with nothing to reduce"
                if flags & vk.X_REDUCE_ONLY_REJECTED
                else "not filled"
            )
            return Ack(order.client_id, "rejected", reason=reason)
        filled = (
            f"{abs(before):.{self.market.amount_decimals}f}"
            if flags & vk.X_REDUCE_ONLY_CLIPPED
            else order.amount
        )
        return Ack(
            order.client_id,
            "filled",
            exchange_id=order.client_id,
            filled=filled,
            average_price=repr(float(out.fill_price[row])),
        )

    def lookup(self, order: OrderRequest) -> Lookup:
        """The venue's answer to the order with this client id, or ``not_found``."""
        ack = self._orders.get(order.client_id)
        if ack is None:
            return Lookup(order.client_id, "not_found")
        return Lookup(order.client_id, ack.status, exchange_id=ack.exchange_id, reason=ack.reason)

    def _row(self, account: str) -> int:
        if not self._rows:
            self._rows.update({str(a): i for i, a in enumerate(self.ids.tolist())})
        row = self._rows.get(str(account))
        if row is None:
            raise InvalidInput(
                f"account {account!r} is not a follower on this venue",
                field="account",
                value=account,
            )
        return row

    # ------------------------------------------------------------------ funding

    def apply_funding(
        self,
        rate: float,
        mark_price: float,
        timestamp: int | np.datetime64 | None = None,
    ) -> FloatArray:
        r"""Settle one funding payment: each follower pays :math:`q\,c\,m\,r`.

        Longs pay and shorts receive when the rate is positive (Binance, "Introduction to
        Binance Futures Funding Rates": funding amount = position value at the mark × funding
        rate). Payments are booked in ``funding`` (negative: received); an isolated follower
        whose free balance cannot pay has its collateral cut, which moves its liquidation
        price (recomputed for every holder).

        Parameters
        ----------
        rate
            Funding rate of this settlement (0.0001 = 0.01%).
        mark_price
            Mark price at the funding time.
        timestamp
            Funding time (ns); checked against the venue's clock when given.

        Returns
        -------
        numpy.ndarray
            The payment of each follower (0 when flat).

        Raises
        ------
        InvalidInput
            ``rate`` not finite, ``mark_price`` not positive and finite, ``timestamp`` earlier
            than the venue's clock.
        """
        if not math.isfinite(rate):
            raise InvalidInput(
                f"funding rate must be a finite number, got {rate}", field="rate", value=rate
            )
        m = _check_price(mark_price, "mark_price")
        if timestamp is not None:
            self.clock = self._tick(timestamp, "timestamp")
        payment = np.empty(len(self))
        t = self.market.tiers
        vk.funding_kernel(
            float(rate),
            m,
            self.market.contract_size,
            t.floor,
            t.cap,
            t.mmr,
            t.cum,
            self.position,
            self.entry_price,
            self.wallet_balance,
            self.collateral,
            self.isolated,
            self.liquidation_price,
            self.funding,
            payment,
        )
        self.mark_price = m
        return payment

    # ------------------------------------------------------------------ bars

    def advance(
        self,
        bars: OHLC | Mapping[str, ArrayLike],
        *,
        mark: ArrayLike | None = None,
        groups: ArrayLike | None = None,
        track: ArrayLike | None = None,
    ) -> AdvanceResult:
        """Walk price bars for every follower: liquidations, then mark to market.

        One parallel numba kernel call over followers. Per bar and follower: a long whose
        liquidation price the bar's ``low`` reaches (``<=``), or a short whose price the
        ``high`` reaches (``>=``), is liquidated at that price (module docstring,
        "Liquidation"); then equity is marked at the bar's mark, the running peak and maximum
        drawdown are updated, and a bar with a position open counts toward time in market.
        Pass the mark-price klines' high and low to liquidate on the mark, as Binance does.

        Parameters
        ----------
        bars
            :class:`levalign.risk.ohlc.OHLC`, or a mapping with ``timestamp``, ``high``,
            ``low``, ``close`` and optionally ``mark`` arrays (one bar or more).
        mark
            Per-bar mark price for valuation; default ``bars["mark"]`` if present, else the
            close.
        groups
            Optional integer group code per follower (e.g. the sizing mode; −1: in no group)
            for per-bar sums of equity and notional by group.
        track
            Optional row indices of followers whose equity and position are recorded at
            every bar.

        Returns
        -------
        AdvanceResult

        Raises
        ------
        InvalidInput
            A missing column; arrays of different lengths; a price that is NaN, not finite or
            not positive; a high below its low; timestamps not strictly increasing, or not
            after the bars already walked and the last fill (the field and row are named);
            bad ``groups`` or ``track``.
        """
        ts, high, low, bar_mark = _bar_columns(bars, mark)
        if self.last_bar_time is not None and ts[0] <= self.last_bar_time:
            raise InvalidInput(
                f"bar timestamp {int(ts[0])} is not after the last bar already walked "
                f"({self.last_bar_time}): pass each bar once, in time order",
                field="bars.timestamp[0]",
                value=int(ts[0]),
            )
        if self.clock is not None and ts[0] < self.clock:
            raise InvalidInput(
                f"bar timestamp {int(ts[0])} is before the venue's clock ({self.clock}, the "
                "last fill or funding): walk the bars before executing later events",
                field="bars.timestamp[0]",
                value=int(ts[0]),
            )
        n = len(self)
        n_bars = ts.size
        group, n_groups = _groups(groups, n)
        track_row, n_tracked = _track(track, n)
        liquidated_bar = np.empty(n, dtype=np.int64)
        t = self.market.tiers
        g_equity = np.zeros((vk.CHUNKS, n_groups, n_bars))
        g_notional = np.zeros((vk.CHUNKS, n_groups, n_bars))
        g_flat = np.zeros((vk.CHUNKS, n_groups, n_bars))
        t_equity = np.zeros((n_tracked, n_bars))
        t_position = np.zeros((n_tracked, n_bars))
        vk.advance_kernel(
            high,
            low,
            bar_mark,
            self.market.contract_size,
            self.position,
            self.entry_price,
            self.wallet_balance,
            self.collateral,
            self.isolated,
            self.liquidation_price,
            self.realized_pnl,
            self.liquidations,
            self.liquidation_losses,
            self.peak_equity,
            self.max_drawdown,
            self.bars_in_market,
            self.derisk_distance,
            self.derisk_restore,
            self.derisk_add_margin,
            self._fill_model(),
            t.floor,
            t.cap,
            t.mmr,
            t.cum,
            t.max_leverage,
            self.fees,
            self.slippage,
            self.derisks,
            group,
            track_row,
            liquidated_bar,
            g_equity,
            g_notional,
            g_flat,
            t_equity,
            t_position,
        )
        self.bars_seen += n_bars
        self.last_bar_time = int(ts[-1])
        self.clock = (
            self.last_bar_time if self.clock is None else max(self.clock, self.last_bar_time)
        )
        self.mark_price = float(bar_mark[-1])
        hit = liquidated_bar[liquidated_bar >= 0]
        return AdvanceResult(
            timestamp=ts,
            liquidated_bar=liquidated_bar,
            liquidations_per_bar=np.bincount(hit, minlength=n_bars).astype(np.int64),
            group_equity=(
                g_equity.sum(axis=0) + np.cumsum(g_flat.sum(axis=0), axis=1) if n_groups else None
            ),
            group_notional=g_notional.sum(axis=0) if n_groups else None,
            track_equity=t_equity if n_tracked else None,
            track_position=t_position if n_tracked else None,
        )

    def _fill_model(self) -> FloatArray:
        """The fee, slippage and lot parameters of de-risking fills (``vk.FILL_*``)."""
        fill = np.empty(vk.FILL_SIZE)
        m, s = self.market, self.slippage_model
        fill[vk.FILL_TAKER_FEE] = self.taker_fee
        fill[vk.FILL_SLIP_FIXED_BPS] = s.fixed_bps
        fill[vk.FILL_SLIP_IMPACT_BPS] = s.impact_bps
        fill[vk.FILL_SLIP_IMPACT_NOTIONAL] = s.impact_notional
        fill[vk.FILL_AMOUNT_STEP] = float(m.amount_step or 0.0)
        fill[vk.FILL_AMOUNT_DECIMALS] = m.amount_decimals
        fill[vk.FILL_MIN_AMOUNT] = float(m.min_amount or 0.0)
        return fill

    def _tick(self, timestamp: int | np.datetime64, name: str) -> int:
        ts = _as_ns(timestamp, name)
        if self.clock is not None and ts < self.clock:
            raise InvalidInput(
                f"{name} {ts} is earlier than the venue's clock {self.clock} (the last bar, "
                "fill or funding): events must come in time order",
                field=name,
                value=ts,
            )
        return ts


# ---------------------------------------------------------------------- validation


def _check_price(value: float, name: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name} must be a number, got {value!r}", field=name) from exc
    if not (math.isfinite(x) and x > 0.0):
        raise InvalidInput(
            f"{name} must be a positive finite price, got {value}", field=name, value=x
        )
    return x


def _as_ns(value: int | np.datetime64, name: str) -> int:
    if isinstance(value, np.datetime64):
        return int(value.astype("datetime64[ns]").astype(np.int64))
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    raise InvalidInput(
        f"{name} must be integer nanoseconds since the epoch or a numpy datetime64, got {value!r}",
        field=name,
    )


def _check_ids(got: NDArray[Any], want: NDArray[Any], name: str) -> None:
    if len(got) != len(want):
        raise InvalidInput(
            f"{name} lists {len(got)} followers but the venue holds {len(want)}: normalize "
            "on venue.cohort() so that rows match the venue's followers",
            field=name,
            value=len(got),
        )
    differ = np.asarray(got, dtype=object) != np.asarray(want, dtype=object)
    if differ.any():
        i = int(np.argmax(differ))
        a, b = _plain(got[i]), _plain(want[i])
        raise InvalidInput(
            f"{name}[{i}] is {a!r} but the venue's follower {i} is {b!r}: results must list "
            "the venue's followers in its order (normalize on venue.cohort())",
            field=f"{name}[{i}]",
            value=a if isinstance(a, str | int | float) else repr(a),
        )


def _plain(x: Any) -> Any:
    """A numpy scalar as the Python value it holds (for messages)."""
    return x.item() if isinstance(x, np.generic) else x


def _first_bad(mask: NDArray[np.bool_]) -> int | None:
    return int(np.argmax(mask)) if mask.any() else None


def _check_rows(
    equity: FloatArray,
    position: FloatArray,
    entry: FloatArray,
    collateral: FloatArray,
    mode: NDArray[np.int8],
) -> None:
    checks: tuple[tuple[str, NDArray[np.bool_], FloatArray | NDArray[np.int8], str], ...] = (
        ("equity", ~(np.isfinite(equity) & (equity >= 0.0)), equity, "a finite number >= 0"),
        ("position", ~np.isfinite(position), position, "a finite number of contracts"),
        (
            "entry_price",
            (position != 0.0) & ~(np.isfinite(entry) & (entry > 0.0)),
            entry,
            "a positive price where a position is held",
        ),
        (
            "collateral",
            ~(np.isfinite(collateral) & (collateral >= 0.0)),
            collateral,
            "a finite number >= 0",
        ),
        ("margin_mode", mode < 0, mode, f"one of {', '.join(MARGIN_MODES)}"),
    )
    for name, bad, values, what in checks:
        i = _first_bad(bad)
        if i is not None:
            raise InvalidInput(
                f"follower row {i}: {name} is {values[i]}; it must be {what}",
                field=f"followers.{name}[{i}]",
                value=float(values[i]) if name != "margin_mode" else None,
            )


def _check_orders(
    side: NDArray[Any], amount: FloatArray, post: FloatArray, topup: NDArray[np.bool_]
) -> None:
    i = _first_bad(~np.isin(side, (-1, 0, 1)))
    if i is not None:
        raise InvalidInput(
            f"result.side[{i}] is {side[i]}: sides are +1 (buy), −1 (sell) or 0 (no order)",
            field=f"result.side[{i}]",
            value=int(side[i]),
        )
    ordered = side != 0
    i = _first_bad(ordered & ~(np.isfinite(amount) & (amount >= 0.0)))
    if i is not None:
        raise InvalidInput(
            f"result.amount[{i}] is {amount[i]}: an order's amount must be a finite number of "
            "contracts >= 0",
            field=f"result.amount[{i}]",
            value=float(amount[i]),
        )
    i = _first_bad((ordered | topup) & ~(np.isfinite(post) & (post >= 0.0)))
    if i is not None:
        raise InvalidInput(
            f"result.collateral[{i}] is {post[i]}: collateral to post must be finite and >= 0",
            field=f"result.collateral[{i}]",
            value=float(post[i]),
        )


def _bar_columns(  # noqa: PLR0912 - one check per OHLC column, in order
    bars: OHLC | Mapping[str, ArrayLike], mark: ArrayLike | None
) -> tuple[IntArray, FloatArray, FloatArray, FloatArray]:
    if isinstance(bars, OHLC):
        raw: dict[str, Any] = {
            "timestamp": bars.timestamp,
            "high": bars.high,
            "low": bars.low,
            "close": bars.close,
        }
    elif isinstance(bars, Mapping):
        raw = dict(bars)
    else:
        raise InvalidInput(
            f"bars must be an OHLC or a mapping of columns, got {type(bars).__name__}",
            field="bars",
        )
    for name in ("timestamp", "high", "low", "close"):
        if name not in raw:
            raise InvalidInput(
                f"bars have no {name!r} column: pass timestamp, high, low and close "
                "(and optionally mark)",
                field=f"bars.{name}",
            )
    if mark is not None:
        raw["mark"] = mark
    try:
        ts = timestamps_ns(np.asarray(raw["timestamp"]))
    except InvalidInput as exc:
        raise InvalidInput(f"bars.{exc.message}", field="bars.timestamp") from exc
    if ts.size == 0:
        raise InvalidInput("bars are empty: pass at least one bar", field="bars")
    prices: dict[str, FloatArray] = {}
    for name in ("high", "low", "close", "mark"):
        if name not in raw:
            continue
        try:
            values = np.ascontiguousarray(raw[name], dtype=np.float64).ravel()
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"bars.{name} is not numeric: {exc}", field=f"bars.{name}") from exc
        if values.size != ts.size:
            raise InvalidInput(
                f"bars.{name} has {values.size} values but bars.timestamp has {ts.size}",
                field=f"bars.{name}",
                value=int(values.size),
            )
        i = _first_bad(~(np.isfinite(values) & (values > 0.0)))
        if i is not None:
            what = "missing (NaN)" if np.isnan(values[i]) else str(values[i])
            raise InvalidInput(
                f"bars.{name} is {what} at row {i} (timestamp {int(ts[i])}): prices must be "
                "positive finite numbers; fix or remove the bar",
                field=f"bars.{name}[{i}]",
                value=None if np.isnan(values[i]) else float(values[i]),
            )
        prices[name] = values
    i = _first_bad(prices["high"] < prices["low"])
    if i is not None:
        raise InvalidInput(
            f"bars.high {prices['high'][i]} is below bars.low {prices['low'][i]} at row {i}",
            field=f"bars.high[{i}]",
            value=float(prices["high"][i]),
        )
    i = _first_bad(np.diff(ts) <= 0)
    if i is not None:
        what = "duplicates" if ts[i + 1] == ts[i] else "is earlier than"
        raise InvalidInput(
            f"bars.timestamp[{i + 1}] ({int(ts[i + 1])}) {what} row {i} ({int(ts[i])}): bars "
            "must be sorted by time without duplicates",
            field=f"bars.timestamp[{i + 1}]",
            value=int(ts[i + 1]),
        )
    bar_mark = prices.get("mark", prices["close"])
    return ts, prices["high"], prices["low"], bar_mark


def _groups(groups: ArrayLike | None, n: int) -> tuple[IntArray, int]:
    if groups is None:
        return np.full(n, -1, dtype=np.int64), 0
    g = np.asarray(groups)
    if g.shape != (n,) or not np.issubdtype(g.dtype, np.integer):
        raise InvalidInput(
            f"groups must be one integer code per follower ({n}), got shape {g.shape} and "
            f"dtype {g.dtype}",
            field="groups",
        )
    if n and g.min() < -1:
        raise InvalidInput(
            "group codes must be >= 0 (or −1 for no group)", field="groups", value=int(g.min())
        )
    return np.ascontiguousarray(g, dtype=np.int64), int(g.max()) + 1 if n else 0


def _track(track: ArrayLike | None, n: int) -> tuple[IntArray, int]:
    row = np.full(n, -1, dtype=np.int64)
    if track is None:
        return row, 0
    idx = np.asarray(track)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise InvalidInput("track must be a list of follower row indices", field="track")
    bad = _first_bad((idx < 0) | (idx >= n))
    if bad is not None:
        raise InvalidInput(
            f"track[{bad}] = {idx[bad]} is not a follower row (0 to {n - 1})",
            field=f"track[{bad}]",
            value=int(idx[bad]),
        )
    if np.unique(idx).size != idx.size:
        raise InvalidInput("track lists a follower twice", field="track")
    row[idx] = np.arange(idx.size)
    return row, int(idx.size)


def _positive_decimal(text: str, name: str) -> float:
    """A decimal string of an order as a positive float."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InvalidInput(
            f"{name} must be a positive decimal, got {text!r}", field=name, value=text
        )
    return value
