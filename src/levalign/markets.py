"""Market specifications and leverage-tier tables.

Markets are read in ccxt's formats: ``exchange.load_markets()`` output for lot sizes, limits and
contract sizes, and ``exchange.fetch_leverage_tiers()`` output for the tiered margin table.
Both camelCase (as ccxt emits) and snake_case keys are accepted.

Two presets are bundled (``levalign/data/PROVENANCE.md`` gives every source):

``binance-usdm``
    Binance USDⓈ-M tier brackets for 349 markets (October 2024 snapshot) and lot/limit filters
    for the largest markets.
``hyperliquid``
    Hyperliquid perpetuals: tiers per the Hyperliquid docs (``mmr = 1 / (2 · max_leverage)``),
    size decimals and the $10 minimum order value.

Whatever a user's ccxt JSON states wins over the preset.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from levalign._files import read_text
from levalign.errors import ConfigurationError, InvalidInput

__all__ = [
    "EXCHANGE_FAMILIES",
    "PRESETS",
    "MarketSpec",
    "Markets",
    "TierTable",
    "as_markets",
    "hyperliquid_tier_table",
    "load_markets",
    "rebuild_cum",
]

FloatArray = NDArray[np.float64]

#: exchange name (ccxt id and common spellings) -> (margin family, bundled preset or None).
#: The family names the liquidation rule (:func:`levalign.margin.margin_model`).
EXCHANGE_FAMILIES: dict[str, tuple[str, str | None]] = {
    "binance": ("binance", "binance-usdm"),
    "binanceusdm": ("binance", "binance-usdm"),
    "binance-usdm": ("binance", "binance-usdm"),
    "binancecoinm": ("binance", None),
    "bybit": ("bybit", None),
    "okx": ("okx", None),
    "bitget": ("bitget", None),
    "gate": ("gate", None),
    "gateio": ("gate", None),
    "kucoinfutures": ("kucoin", None),
    "hyperliquid": ("hyperliquid", "hyperliquid"),
}

#: families whose maintenance margin is the whole position at its tier's rate (no maintenance
#: amount): a tier table without ``cum`` gets zeros there instead of the rebuilt amounts
WHOLE_POSITION_RATE = frozenset({"okx", "bitget", "gate", "kucoin"})

#: families whose tier bounds are position sizes in contracts, not notionals (OKX "position
#: tiers": ccxt reports ``minSz`` and ``maxSz`` as ``minNotional`` and ``maxNotional``)
TIERS_IN_CONTRACTS = frozenset({"okx"})

#: bundled presets: name -> (exchange, markets file, tiers file or None)
PRESETS: dict[str, tuple[str, str, str | None]] = {
    "binance-usdm": (
        "binance",
        "binance_usdm_markets.json",
        "binance_usdm_leverage_tiers_2024-10.json",
    ),
    "hyperliquid": ("hyperliquid", "hyperliquid_markets.json", None),
}

_TOL = 1e-9


@dataclass(frozen=True, eq=False)
class TierTable:
    """A tiered margin table for one market: one row per tier, ascending notional.

    Notional is in the settle currency (quote for linear, coin for inverse contracts).
    Maintenance margin for a notional ``N`` in tier ``n`` is ``N · mmr_n − cum_n``.

    Attributes
    ----------
    floor, cap
        Notional bounds of each tier, ``floor[0] == 0`` and ``floor[n] == cap[n-1]``.
    mmr
        Maintenance margin rate of each tier.
    cum
        Maintenance amount (Binance ``cum``, Hyperliquid "maintenance deduction").
    max_leverage
        Largest leverage setting allowed while the notional is in that tier.
    """

    floor: FloatArray
    cap: FloatArray
    mmr: FloatArray
    cum: FloatArray
    max_leverage: FloatArray

    def __post_init__(self) -> None:
        for name in ("floor", "cap", "mmr", "cum", "max_leverage"):
            arr = np.ascontiguousarray(getattr(self, name), dtype=np.float64)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @classmethod
    def from_rows(
        cls,
        floor: list[float],
        cap: list[float],
        mmr: list[float],
        max_leverage: list[float],
        cum: list[float | None] | None = None,
        *,
        symbol: str = "?",
    ) -> TierTable:
        """Build and validate a table; a missing ``cum`` is rebuilt (see :func:`rebuild_cum`).

        Raises
        ------
        ConfigurationError
            If the table is empty, has gaps or overlaps between tiers, bounds that do not
            increase, rates outside ``[0, 1)``, or leverage below 1.
        """
        n = len(floor)
        if n == 0 or not (len(cap) == len(mmr) == len(max_leverage) == n):
            raise ConfigurationError(
                f"tier table for {symbol} is empty or has columns of different lengths",
                field=f"tiers.{symbol}",
            )
        for i in range(n):
            where = f"tiers.{symbol}[{i}]"
            values = (floor[i], cap[i], mmr[i], max_leverage[i])
            if not all(isinstance(v, int | float) and not math.isnan(v) for v in values):
                raise ConfigurationError(
                    f"tier {i + 1} of {symbol} has a non-numeric or NaN bound, rate or leverage",
                    field=where,
                )
            if not cap[i] > floor[i]:
                raise ConfigurationError(
                    f"tier {i + 1} of {symbol}: maxNotional {cap[i]} must exceed minNotional "
                    f"{floor[i]} (bounds must increase)",
                    field=where,
                    value=cap[i],
                )
            if i == 0 and floor[0] != 0:
                raise ConfigurationError(
                    f"the first tier of {symbol} must start at notional 0, not {floor[0]}",
                    field=where,
                    value=floor[0],
                )
            if i > 0 and not math.isclose(floor[i], cap[i - 1], rel_tol=1e-12, abs_tol=1e-9):
                gap = "gap" if floor[i] > cap[i - 1] else "overlap"
                raise ConfigurationError(
                    f"tiers {i} and {i + 1} of {symbol} leave a {gap}: tier {i} ends at "
                    f"{cap[i - 1]} but tier {i + 1} starts at {floor[i]}",
                    field=where,
                    value=floor[i],
                )
            if not 0 <= mmr[i] < 1:
                raise ConfigurationError(
                    f"tier {i + 1} of {symbol}: maintenance margin rate {mmr[i]} must be in [0, 1)",
                    field=where,
                    value=mmr[i],
                )
            if max_leverage[i] < 1:
                raise ConfigurationError(
                    f"tier {i + 1} of {symbol}: max leverage {max_leverage[i]} must be at least 1",
                    field=where,
                    value=max_leverage[i],
                )
        if cum is None or any(c is None for c in cum):
            cum_values = rebuild_cum(floor, mmr)
        else:
            cum_values = [float(c) for c in cum if c is not None]
        return cls(
            floor=np.asarray(floor, dtype=np.float64),
            cap=np.asarray(cap, dtype=np.float64),
            mmr=np.asarray(mmr, dtype=np.float64),
            cum=np.asarray(cum_values, dtype=np.float64),
            max_leverage=np.asarray(max_leverage, dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.floor)

    def index(self, notional: float) -> int:
        """Tier holding ``notional`` (bounds are ``[floor, cap)``; above the last cap: last)."""
        n = abs(notional)
        for i in range(len(self.cap)):
            if n < self.cap[i]:
                return i
        return len(self.cap) - 1

    def maintenance_margin(self, notional: float) -> float:
        """Maintenance margin ``|N| · mmr − cum`` for the tier holding ``N``."""
        i = self.index(notional)
        return abs(notional) * float(self.mmr[i]) - float(self.cum[i])

    def max_leverage_at(self, notional: float) -> float:
        """Largest leverage setting allowed at this notional."""
        return float(self.max_leverage[self.index(notional)])

    @property
    def max_notional(self) -> float:
        """Upper bound of the last tier: no position may be larger."""
        return float(self.cap[-1])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TierTable):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, k), getattr(other, k))
            for k in ("floor", "cap", "mmr", "cum", "max_leverage")
        )

    __hash__ = None  # type: ignore[assignment]


def rebuild_cum(floor: list[float] | FloatArray, mmr: list[float] | FloatArray) -> list[float]:
    r"""Rebuild the maintenance amounts of a tier table.

    .. math:: \mathrm{cum}_0 = 0,\qquad
              \mathrm{cum}_n = \mathrm{floor}_n\,(\mathrm{mmr}_n - \mathrm{mmr}_{n-1})
              + \mathrm{cum}_{n-1}

    This makes maintenance margin ``N·mmr − cum`` continuous across tier bounds; it is how
    Binance defines ``cum`` (Binance "Leverage and Margin of USDⓈ-M Futures") and how
    Hyperliquid defines its maintenance deduction (Hyperliquid docs, "Margin tiers").
    """
    out = [0.0]
    for i in range(1, len(floor)):
        out.append(float(floor[i]) * (float(mmr[i]) - float(mmr[i - 1])) + out[-1])
    return out


@dataclass(frozen=True)
class MarketSpec:
    """One derivatives market, in ccxt's vocabulary.

    Attributes
    ----------
    symbol
        ccxt unified symbol, ``BASE/QUOTE:SETTLE`` (``BTC/USDT:USDT``).
    id
        The exchange's own id (``BTCUSDT``).
    linear
        True for linear (quote-margined), False for inverse (coin-margined) contracts.
    contract_size
        Base units per contract (linear) or quote units per contract (inverse).
    amount_step, min_amount, min_cost, price_tick
        Lot step and minimum amount in contracts, minimum order value in quote currency, price
        tick. ``None`` when the source does not state it.
    tiers
        The leverage-tier table (bounds in contracts where :attr:`tiers_in_contracts`).
    taker_fee
        Taker fee rate (ccxt ``taker``); the venues whose liquidation threshold includes the
        fee to close read it (:class:`levalign.margin.FeeTieredMarginModel`).
    margin_family
        The venue's liquidation rule: a key of :func:`levalign.margin.margin_model`.
    """

    symbol: str
    id: str
    base: str
    quote: str
    settle: str
    tiers: TierTable
    linear: bool = True
    contract_size: float = 1.0
    amount_step: float | None = None
    min_amount: float | None = None
    min_cost: float | None = None
    price_tick: float | None = None
    price_significant_digits: int | None = None
    taker_fee: float | None = None
    margin_family: str = "binance"
    source: str = ""

    @property
    def tiers_in_contracts(self) -> bool:
        """True when the tier bounds are position sizes in contracts (OKX), not notionals."""
        return self.margin_family in TIERS_IN_CONTRACTS

    @property
    def amount_decimals(self) -> int:
        """Decimal places of the amount step (0.001 -> 3); amounts are rounded to these."""
        if not self.amount_step:
            return 0
        text = f"{self.amount_step:.12f}".rstrip("0")
        return len(text.split(".")[1]) if "." in text else 0

    @property
    def inverse(self) -> bool:
        """True for coin-margined contracts."""
        return not self.linear

    def base_quantity(self, contracts: float, price: float) -> float:
        """Position size in base currency: ``contracts · contract_size`` (÷ price if inverse)."""
        qty = contracts * self.contract_size
        return qty if self.linear else qty / price

    def notional(self, contracts: float, price: float) -> float:
        """Notional in the settle currency: quote for linear, coin for inverse.

        See docs/design.md, "Markets and margin".
        """
        qty = contracts * self.contract_size
        return qty * price if self.linear else qty / price

    def round_price(self, price: float) -> float:
        """Round a price to the market's tick (Hyperliquid: also to 5 significant figures)."""
        if self.price_significant_digits is not None and price > 0:
            digits = self.price_significant_digits - math.floor(math.log10(price)) - 1
            price = round(price, digits)
        if self.price_tick:
            price = round(round(price / self.price_tick) * self.price_tick, 12)
        return price


class Markets(Mapping[str, MarketSpec]):
    """The markets of one venue, by ccxt symbol, with lookup by exchange id and mapping.

    ``markets["BTC/USDT:USDT"]``, ``markets["BTCUSDT"]`` and, through :meth:`resolve`, a
    symbol of another venue (``BTC/USDC:USDC`` from a Hyperliquid lead) all find Binance's
    BTC perpetual.
    """

    def __init__(
        self,
        exchange: str,
        specs: Mapping[str, MarketSpec],
        symbol_map: Mapping[str, str] | None = None,
    ) -> None:
        self.exchange = exchange
        self.family = EXCHANGE_FAMILIES.get(exchange, ("binance", None))[0]
        self._specs = dict(specs)
        self._by_id: dict[str, str] = {}
        for spec in sorted(self._specs.values(), key=lambda m: ("-" in m.symbol, m.symbol)):
            self._by_id.setdefault(spec.id, spec.symbol)  # perpetuals win a shared id
        self.symbol_map = dict(symbol_map or {})
        self.settle_preference = (
            ("USDC", "USDT", "USD") if self.family == "hyperliquid" else ("USDT", "USDC", "USD")
        )

    def __getitem__(self, symbol: str) -> MarketSpec:
        return self._specs[self.resolve(symbol)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, symbol: object) -> bool:
        try:
            self.resolve(str(symbol))
        except InvalidInput:
            return False
        return True

    def resolve(self, symbol: str, *, field: str = "symbol", from_venue: str | None = None) -> str:
        """Return this venue's symbol for ``symbol``: exactly that market, or an error.

        Tried in order: an explicit ``symbol_map`` entry, the ccxt unified symbol itself, the
        exchange id (``BTCUSDT``). Nothing is guessed for a symbol of this venue: a
        coin-margined ``BTC/USD:BTC`` is never taken for the USDT contract. A symbol from
        another venue (``from_venue``) is copied to this venue's linear perpetual of the same
        base asset in its main settle currency (USDT on Binance, USDC on Hyperliquid), so that
        a Hyperliquid lead's ``BTC/USDC:USDC`` is copied to Binance's ``BTC/USDT:USDT`` unless
        ``symbol_map`` says otherwise; a foreign coin-margined symbol needs a ``symbol_map``
        entry.

        Raises
        ------
        InvalidInput
            If no market matches exactly; the message names this venue's markets of the same
            base asset.
        """
        if symbol in self.symbol_map:
            mapped = self.symbol_map[symbol]
            if mapped in self._specs:
                return mapped
            return self._exact(mapped, field, shown=f"{mapped!r} (symbol_map of {symbol!r})")
        foreign = from_venue not in (None, self.exchange)
        if not foreign:
            return self._exact(symbol, field)
        base, _, rest = symbol.partition("/")
        settle = rest.partition(":")[2]
        if settle and settle == base:
            close = self._candidates(base)
            hint = f", for example {{{symbol!r}: {close[0]!r}}}" if close else ""
            raise InvalidInput(
                f"lead symbol {symbol!r} of {from_venue} is coin-margined: it is not copied to a "
                f"{self.exchange} market by guess; name the market with a symbol_map entry{hint}",
                field=field,
                value=symbol,
            )
        for quote in self.settle_preference:
            candidate = f"{base}/{quote}:{quote}"
            if candidate in self._specs:
                return candidate
        return self._exact(symbol, field)

    def _exact(self, symbol: str, field: str, shown: str | None = None) -> str:
        if symbol in self._specs:
            return symbol
        if symbol in self._by_id:
            return self._by_id[symbol]
        close = self._candidates(symbol.partition("/")[0])
        hint = f"; did you mean one of: {', '.join(close)}?" if close else ""
        raise InvalidInput(
            f"unknown symbol {shown or repr(symbol)} on {self.exchange}{hint} (use the ccxt "
            "unified symbol, such as BTC/USDT:USDT, or the exchange id; add a market with a "
            "markets JSON)",
            field=field,
            value=symbol,
        )

    def _candidates(self, base: str) -> list[str]:
        """Up to five markets of this base asset (else of a similar name), perpetuals first."""
        same = [s for s in self._specs if s.partition("/")[0] == base]
        if not same:
            same = [s for s in self._specs if s.partition("/")[0].startswith(base[:3])]
        return sorted(same, key=lambda s: ("-" in s, s))[:5]

    def with_symbol_map(self, symbol_map: Mapping[str, str]) -> Markets:
        """A copy that maps the given foreign symbols to this venue's symbols."""
        return Markets(self.exchange, self._specs, {**self.symbol_map, **symbol_map})


# --------------------------------------------------------------------------- loading


def load_markets(
    exchange: str = "binance",
    *,
    markets: str | Path | Mapping[str, Any] | None = None,
    tiers: str | Path | Mapping[str, Any] | None = None,
    symbol_map: Mapping[str, str] | None = None,
) -> Markets:
    """Load the markets of one venue.

    Parameters
    ----------
    exchange
        A key of ``EXCHANGE_FAMILIES``: ``binance`` (or ``binanceusdm``) and ``hyperliquid``
        have bundled markets; ``binancecoinm``, ``bybit``, ``okx``, ``bitget``, ``gate`` and
        ``kucoinfutures`` need ``tiers`` (and ``markets`` for lot sizes and fees).
    markets
        A preset name (``binance-usdm``, ``hyperliquid``), a path to a ccxt ``load_markets()``
        JSON, or that mapping itself. A file or mapping is layered over the exchange's preset:
        every field it states wins.
    tiers
        A path to a ccxt ``fetch_leverage_tiers()`` JSON, or that mapping; wins over the preset.
    symbol_map
        Explicit foreign-symbol -> this-venue-symbol mapping for copying across venues.

    Returns
    -------
    Markets

    Raises
    ------
    ConfigurationError
        Unknown exchange or preset, unreadable or malformed files, inconsistent tier tables, a
        market without a tier table.
    """
    key = exchange.lower()
    if key not in EXCHANGE_FAMILIES:
        raise ConfigurationError(
            f"unknown exchange {exchange!r}; known: {', '.join(sorted(EXCHANGE_FAMILIES))}",
            field="exchange",
            value=exchange,
        )
    family, preset = EXCHANGE_FAMILIES[key]
    if isinstance(markets, str) and markets in PRESETS:
        preset, markets = markets, None
    elif isinstance(markets, str) and not Path(markets).exists() and "." not in markets:
        raise ConfigurationError(
            f"unknown markets preset {markets!r}; presets: {', '.join(PRESETS)}, "
            "or give a path to a ccxt markets JSON",
            field="markets",
            value=markets,
        )

    market_rows: dict[str, dict[str, Any]] = {}
    tier_rows: dict[str, list[dict[str, Any]]] = {}
    if preset is not None:
        _, markets_file, tiers_file = PRESETS[preset]
        market_rows.update(_read_json_resource(markets_file)["markets"])
        if tiers_file is not None:
            tier_rows.update(_read_json_resource(tiers_file))
    if markets is not None:
        user_markets = _read_json_arg(markets, "markets")
        for symbol, row in _as_market_dict(user_markets).items():
            market_rows[symbol] = _deep_merge(market_rows.get(symbol, {}), row)
    if tiers is not None:
        tier_rows.update(_as_tier_dict(_read_json_arg(tiers, "tiers")))

    specs: dict[str, MarketSpec] = {}
    for symbol in sorted(set(market_rows) | set(tier_rows)):
        spec = _build_spec(symbol, market_rows.get(symbol, {}), tier_rows.get(symbol), family)
        if spec is not None:
            specs[symbol] = spec
    if not specs:
        raise ConfigurationError(
            f"levalign has no bundled markets for {exchange}: pass `tiers`, a JSON of ccxt's "
            f"fetch_leverage_tiers() for {exchange}, and `markets`, a JSON of its "
            "load_markets() (lot sizes, contract sizes, taker fee), as the account's or "
            "request's `tiers` and `markets` fields (paths to the files)",
            field="tiers",
        )
    return Markets(key, specs, symbol_map)


def as_markets(markets: Markets | str, *, field: str = "markets") -> Markets:
    """``markets`` as loaded markets: a :class:`Markets` as is, an exchange name loaded.

    The Python API's ``markets`` arguments take either, so ``normalize(event, cohort,
    "binance")`` works like ``normalize(event, cohort, load_markets("binance"))``.

    Raises
    ------
    InvalidInput
        Neither a :class:`Markets` nor a string.
    ConfigurationError
        An unknown exchange name.
    """
    if isinstance(markets, Markets):
        return markets
    if isinstance(markets, str):
        return load_markets(markets)
    raise InvalidInput(
        f"{field} must be levalign.load_markets(...) or an exchange name such as 'binance', "
        f"got a {type(markets).__name__}",
        field=field,
    )


def _read_json_resource(name: str) -> dict[str, Any]:
    text = resources.files("levalign.data").joinpath(name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _read_json_arg(value: str | Path | Mapping[str, Any], field_name: str) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    path = Path(value)
    text = read_text(path, f"{field_name} file", field_name, error=ConfigurationError)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{field_name} file {str(path)!r} is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}",
            field=field_name,
            value=str(path),
        ) from exc
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"{field_name} file {str(path)!r} must hold a JSON object keyed by symbol",
            field=field_name,
        )
    return data


def _as_market_dict(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Accept ``{symbol: market}``, ``{"markets": {...}}`` or a ccxt list of markets."""
    inner = data.get("markets", data)
    if isinstance(inner, list):
        return {str(m["symbol"]): dict(m) for m in inner if isinstance(m, dict) and "symbol" in m}
    if not isinstance(inner, Mapping):
        raise ConfigurationError(
            "markets JSON must map symbols to ccxt market objects", field="markets"
        )
    return {str(k): dict(v) for k, v in inner.items() if isinstance(v, Mapping)}


def _as_tier_dict(data: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for symbol, rows in data.items():
        if not isinstance(rows, list):
            raise ConfigurationError(
                f"tiers for {symbol} must be a list of tiers (ccxt fetch_leverage_tiers format)",
                field=f"tiers.{symbol}",
            )
        out[str(symbol)] = [dict(r) for r in rows]
    return out


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        elif v is not None:
            out[k] = v
    return out


def _get(row: Mapping[str, Any], *names: str) -> Any:
    """First present key among camelCase / snake_case spellings, following dotted paths."""
    for name in names:
        node: Any = row
        for part in name.split("."):
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            else:
                break
        else:
            if node is not None:
                return node
    return None


def _num(value: Any, where: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"{where} must be a number, got {value!r}", field=where, value=str(value)
        ) from exc
    if math.isnan(out) or out < 0:
        raise ConfigurationError(
            f"{where} must be a non-negative number, got {value!r}", field=where, value=str(value)
        )
    return out


def _tier_table_from_ccxt(symbol: str, rows: list[dict[str, Any]], family: str) -> TierTable:
    """A ccxt ``fetch_leverage_tiers()`` list as a tier table.

    The maintenance amount is read from ``info.cum`` (Binance), ``info.mmDeduction`` (Bybit) or
    ``info.deduction`` (Gate) when the venue states it; otherwise it is rebuilt
    (:func:`rebuild_cum`), or zero for venues whose rate applies to the whole position
    (``WHOLE_POSITION_RATE``).
    """
    rows = sorted(rows, key=lambda r: float(_get(r, "minNotional", "min_notional") or 0.0))
    floor, cap, mmr, lev, cum = [], [], [], [], []
    for i, r in enumerate(rows):
        where = f"tiers.{symbol}[{i}]"
        f = _num(_get(r, "minNotional", "min_notional"), f"{where}.minNotional")
        c = _num(_get(r, "maxNotional", "max_notional"), f"{where}.maxNotional")
        m = _num(
            _get(r, "maintenanceMarginRate", "maintenance_margin_rate"),
            f"{where}.maintenanceMarginRate",
        )
        x = _num(_get(r, "maxLeverage", "max_leverage"), f"{where}.maxLeverage")
        if f is None or c is None or m is None or x is None:
            raise ConfigurationError(
                f"tier {i + 1} of {symbol} lacks minNotional, maxNotional, "
                "maintenanceMarginRate or maxLeverage",
                field=where,
            )
        floor.append(f)
        cap.append(c)
        mmr.append(m)
        lev.append(x)
        cum.append(
            _num(
                _get(r, "info.cum", "cum", "info.mmDeduction", "info.deduction"),
                f"{where}.info.cum",
            )
        )
    if family in WHOLE_POSITION_RATE and all(c is None for c in cum):
        cum = [0.0] * len(cum)
    return TierTable.from_rows(floor, cap, mmr, lev, cum, symbol=symbol)


def hyperliquid_tier_table(
    lower_bounds: Sequence[float], max_leverages: Sequence[float], *, symbol: str = "?"
) -> TierTable:
    r"""Tier table from Hyperliquid's ``(lower notional bound, max leverage)`` steps.

    Hyperliquid docs, "Margin tiers": the maintenance margin rate of a tier is half its initial
    margin at maximum leverage, and the deduction makes maintenance margin continuous:

    .. math:: \mathrm{mmr}_n = \frac{1}{2 L_n}, \qquad
              \mathrm{deduction}_n = \mathrm{floor}_n (\mathrm{mmr}_n - \mathrm{mmr}_{n-1})
              + \mathrm{deduction}_{n-1}

    The last tier has no upper bound (``cap = inf``).
    """
    floor = [float(b) for b in lower_bounds]
    cap = [*floor[1:], math.inf]
    mmr = [1.0 / (2.0 * float(x)) for x in max_leverages]
    cum: list[float | None] = list(rebuild_cum(floor, mmr))
    return TierTable.from_rows(
        floor, cap, mmr, [float(x) for x in max_leverages], cum, symbol=symbol
    )


def _hyperliquid_tiers(symbol: str, row: Mapping[str, Any]) -> TierTable:
    """Hyperliquid tiers from ``[[lower_bound, max_leverage], ...]`` (preset) or leverage max."""
    steps = row.get("margin_tiers") or [[0.0, _get(row, "limits.leverage.max") or 1.0]]
    bounds = [float(b) for b, _ in steps]
    leverages = [float(x) for _, x in steps]
    user_max = _get(row, "limits.leverage.max")
    if user_max is not None:  # what ccxt reports is the first tier's max leverage
        leverages[0] = float(user_max)
    return hyperliquid_tier_table(bounds, leverages, symbol=symbol)


def _build_spec(
    symbol: str,
    row: Mapping[str, Any],
    tier_rows: list[dict[str, Any]] | None,
    family: str,
) -> MarketSpec | None:
    if family == "hyperliquid":
        tiers = _hyperliquid_tiers(symbol, row)
    elif tier_rows:
        tiers = _tier_table_from_ccxt(symbol, tier_rows, family)
    elif row:
        raise ConfigurationError(
            f"market {symbol} has no leverage tiers: add it to the tiers JSON "
            "(ccxt fetch_leverage_tiers format)",
            field=f"tiers.{symbol}",
        )
    else:
        return None
    base, _, rest = symbol.partition("/")
    quote, _, settle = rest.partition(":")
    inverse = bool(_get(row, "inverse"))
    linear_flag = _get(row, "linear")
    linear = bool(linear_flag) if linear_flag is not None else not inverse
    where = f"markets.{symbol}"
    return MarketSpec(
        symbol=symbol,
        id=str(_get(row, "id") or _default_id(symbol)),
        base=str(_get(row, "base") or base),
        quote=str(_get(row, "quote") or quote),
        settle=str(_get(row, "settle") or settle or quote),
        tiers=tiers,
        linear=linear,
        contract_size=_num(_get(row, "contractSize", "contract_size"), f"{where}.contractSize")
        or 1.0,
        amount_step=_num(_get(row, "precision.amount", "amount_step"), f"{where}.precision.amount"),
        min_amount=_num(_get(row, "limits.amount.min", "min_amount"), f"{where}.limits.amount.min"),
        min_cost=_num(_get(row, "limits.cost.min", "min_cost"), f"{where}.limits.cost.min"),
        price_tick=_num(_get(row, "precision.price", "price_tick"), f"{where}.precision.price"),
        price_significant_digits=row.get("price_significant_digits"),
        taker_fee=_num(_get(row, "taker", "taker_fee"), f"{where}.taker"),
        margin_family=family,
        source=str(row.get("source", "")),
    )


def _default_id(symbol: str) -> str:
    """Binance-style id from a ccxt symbol: ``BTC/USDT:USDT`` -> ``BTCUSDT``, dated: ``_YYMMDD``."""
    pair, _, rest = symbol.partition(":")
    _, _, expiry = rest.partition("-")
    return pair.replace("/", "") + (f"_{expiry}" if expiry else "")
