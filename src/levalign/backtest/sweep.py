"""Sweeps: a grid of leads x follower profiles x modes, replayed as Dask tasks.

Each cell of the grid replays one lead (:func:`levalign.backtest.replay.backtest`) for a
cohort built from one follower profile in one normalization mode, beside naive copiers (the
baseline, group ``naive``) holding the same equities. A cell's cohort is drawn from a seed of
its own, derived from the sweep's seed and the cell's place in the grid
(:class:`numpy.random.SeedSequence` with the spawn key ``(lead, profile, mode)``), so a cell
sees the same followers whether it runs serially, on a :class:`distributed.LocalCluster` or on
a remote cluster, and whatever else the grid holds besides it.

A task returns only its cell's summary rows (:meth:`BacktestResult.summary`, one per group,
with the cell's keys), never the replay's curves or follower columns: a sweep's size is its
number of cells, not of followers.

Grid file
---------
``levalign sweep GRID.json`` reads::

    {
      "exchange": "binance",
      "leads": ["btc_trend_15x", {"lead": "my_lead.csv", "bars": "prices.csv",
                                  "funding": "funding.csv", "name": "mine"}],
      "bars": {"other_lead.csv": "other_prices.csv"},
      "funding": {"other_lead.csv": "other_funding.csv"},
      "profiles": [{"max_leverage": 5, "min_liq_distance": 0.1, "margin_mode": "cross"}],
      "modes": ["proportional", "target_leverage"],
      "followers_per_cell": 50,
      "seed": 7,
      "naive": true,
      "sample_minutes": 60
    }

A lead is a sample name (:data:`~levalign.backtest.strategies.SAMPLE_LEADS`, whose bars and
funding are the bundled ones) or a history file with its ``bars`` (and optional ``funding``),
given in the lead's object or in the top-level ``bars``/``funding`` maps keyed by the lead as
written. Relative paths are taken from the grid file's folder.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from levalign import _layout as layout
from levalign._extras import require
from levalign._paths import beside
from levalign._progress import progress_bar
from levalign.backtest.replay import NAIVE, backtest
from levalign.backtest.strategies import (
    SAMPLE_LEADS,
    FundingRates,
    load_funding,
    sample_leads,
)
from levalign.errors import ConfigurationError, InvalidInput, Retryable
from levalign.markets import Markets, load_markets
from levalign.normalize import MODES, Cohort
from levalign.risk.ohlc import OHLC, load_ohlc
from levalign.samples import data_path, sample_cohort
from levalign.schemas import unknown_key_message
from levalign.sources.replay import LeadHistory, load_lead_history

__all__ = [
    "KEY_COLUMNS",
    "PROFILE_COLUMNS",
    "SweepCell",
    "SweepGrid",
    "SweepLead",
    "SweepResult",
    "cell_cohort",
    "load_grid",
    "resolve_lead",
    "run_cell",
    "sweep",
    "sweep_grid",
]

#: follower columns a profile may set (every cohort column but the per-follower state)
PROFILE_COLUMNS: tuple[str, ...] = tuple(
    c
    for c in (*layout.FLOAT_COLUMNS, *layout.CATEGORICAL_COLUMNS)
    if c
    not in (
        "equity",
        "available_balance",
        "position",
        "entry_price",
        "collateral",
        "residual",
        "mode",
    )
)
#: the cell's keys, first in every row of a :class:`SweepResult`
KEY_COLUMNS = ("lead", "profile", "profile_json", "mode", "seed", "group")

_DEFAULT_CONNECT_TIMEOUT = 10.0
_T = TypeVar("_T")


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, eq=False)
class SweepLead:
    """One lead of a sweep with everything a worker needs to replay it.

    Attributes
    ----------
    name
        The lead's label in the result (a sample's name, or the history's name).
    history
        The validated history.
    bars
        The OHLC bars of its market.
    funding
        Funding rates, or None.
    """

    name: str
    history: LeadHistory
    bars: OHLC
    funding: FundingRates | None


@dataclass(frozen=True)
class SweepCell:
    """One grid cell: what :func:`run_cell` replays.

    Attributes
    ----------
    lead, profile, mode
        Indices of the cell in the grid's leads, profiles and modes.
    lead_name, mode_name
        The lead's label and the mode.
    profile_items
        The profile as sorted ``(column, value)`` pairs.
    followers
        Followers in the mode (and as many naive copiers when ``naive``).
    seed
        The cell's seed (module docstring).
    naive
        Whether naive copiers run beside the mode.
    taker_fee, sample_minutes
        Replay settings (:func:`~levalign.backtest.replay.backtest`).
    """

    lead: int
    profile: int
    mode: int
    lead_name: str
    mode_name: str
    profile_items: tuple[tuple[str, float | str], ...]
    followers: int
    seed: int
    naive: bool
    taker_fee: float
    sample_minutes: int

    def profile_json(self) -> str:
        """The profile as canonical JSON (sorted keys; infinities as strings)."""
        return json.dumps(
            {k: _json_value(v) for k, v in self.profile_items}, sort_keys=True, allow_nan=False
        )


def _json_value(v: float | str) -> float | str | None:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def resolve_lead(  # noqa: PLR0913 - keyword-only options of a public function, each documented
    lead: str | Path | SweepLead,
    markets: Markets,
    *,
    bars: OHLC | str | Path | None = None,
    funding: FundingRates | str | Path | None = None,
    name: str | None = None,
    field: str = "leads[0]",
) -> SweepLead:
    """Load one lead of a sweep: a sample name, or a history file with its bars.

    Parameters
    ----------
    lead
        A name in :data:`~levalign.backtest.strategies.SAMPLE_LEADS` (its bundled bars and
        funding are the defaults), a lead-history file, or a ready :class:`SweepLead`.
    markets
        The venue's markets.
    bars, funding
        The lead's bars and funding (required bars for a file; override a sample's).
    name
        The label in the result (default: the sample's name or the file's stem).
    field
        The input field named in errors.

    Returns
    -------
    SweepLead

    Raises
    ------
    InvalidInput
        An unknown sample that is no file either, a file lead without bars, or an unreadable
        history, bars or funding file.
    """
    if isinstance(lead, SweepLead):
        return lead
    text = str(lead)
    sample = SAMPLE_LEADS.get(text)
    if sample is not None:
        history = load_lead_history(sample_leads()[text], markets=markets, name=name or text)
        default_bars: str | Path | None = data_path(sample.prices)
        default_funding = data_path(sample.funding) if sample.funding else None
    elif Path(text).is_file():
        history = _wrap(field, lambda: load_lead_history(text, markets=markets, name=name))
        default_bars = default_funding = None
    else:
        raise InvalidInput(
            f"{field}: {text!r} is neither a sample lead ({', '.join(SAMPLE_LEADS)}) nor a "
            "lead-history file: fix the name or the path",
            field=field,
            value=text,
        )
    raw_bars = bars if bars is not None else default_bars
    if raw_bars is None:
        raise InvalidInput(
            f"{field}: lead {text!r} is a file and has no bars: give its OHLC file as 'bars'",
            field=f"{field}.bars",
        )
    ohlc = raw_bars if isinstance(raw_bars, OHLC) else _wrap(f"{field}.bars", _loader(raw_bars))
    raw_funding = funding if funding is not None else default_funding
    rates = (
        _wrap(f"{field}.funding", lambda: load_funding(raw_funding))
        if isinstance(raw_funding, str | Path)
        else raw_funding
    )
    return SweepLead(name=name or history.name, history=history, bars=ohlc, funding=rates)


def _loader(path: str | Path) -> Callable[[], OHLC]:
    return lambda: load_ohlc(path)


def _wrap(field: str, load: Callable[[], _T]) -> _T:
    """Run a loader, naming the sweep's field in its error."""
    try:
        return load()
    except InvalidInput as exc:
        raise InvalidInput(
            f"{field}: {exc.message}", field=field, value=exc.value, details=exc.details
        ) from exc


def _check_profiles(profiles: Sequence[Mapping[str, Any]]) -> list[tuple[tuple[str, Any], ...]]:
    """Every profile's columns known and its values valid; sorted items per profile."""
    if isinstance(profiles, str | bytes | Mapping) or not isinstance(profiles, Sequence):
        raise InvalidInput(
            "profiles must be a list of follower profiles (objects of cohort columns)",
            field="profiles",
        )
    if not profiles:
        raise InvalidInput(
            "profiles is empty: give at least one follower profile ({} for the defaults)",
            field="profiles",
        )
    out: list[tuple[tuple[str, Any], ...]] = []
    for i, profile in enumerate(profiles):
        where = f"profiles[{i}]"
        if not isinstance(profile, Mapping):
            raise InvalidInput(
                f"{where} must be an object of cohort columns, got {type(profile).__name__}",
                field=where,
            )
        items: list[tuple[str, Any]] = []
        for key, value in sorted(profile.items()):
            if key not in PROFILE_COLUMNS:
                hint = " (the sweep sets it per cell)" if key in ("mode", "equity", "id") else ""
                raise InvalidInput(
                    f"{where}.{key} is not a profile column{hint}; profile columns: "
                    f"{', '.join(PROFILE_COLUMNS)}",
                    field=f"{where}.{key}",
                    value=key,
                )
            if key in layout.CATEGORICAL_COLUMNS:
                names = layout.BY_NAME[key].names
                if value not in names:
                    raise InvalidInput(
                        f"{where}.{key} must be one of {', '.join(names)}, got {value!r}",
                        field=f"{where}.{key}",
                        value=value,
                    )
                items.append((key, str(value)))
                continue
            number = _number(value)
            if number is None:
                raise InvalidInput(
                    f"{where}.{key} must be a number, got {value!r}",
                    field=f"{where}.{key}",
                    value=value,
                )
            items.append((key, number))
        # the cohort's own checks (ranges), on one row
        try:
            Cohort.from_table({"id": [0], "equity": [1_000.0], **{k: [v] for k, v in items}})
        except InvalidInput as exc:
            raise InvalidInput(
                f"{where}: {exc.message}",
                field=f"{where}.{(exc.field or '').rsplit('.', 1)[-1]}",
                value=exc.value,
            ) from exc
        out.append(tuple(items))
    return out


def _number(value: Any) -> float | None:
    """A JSON number, or ``"inf"``/``"-inf"``/``"nan"`` (JSON has none), as a float."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("inf", "-inf", "nan", "infinity"):
        return float(value.strip().lower())
    return None


def _check_modes(modes: Sequence[str]) -> list[str]:
    if isinstance(modes, str) or not isinstance(modes, Sequence):
        raise InvalidInput(f"modes must be a list of modes ({', '.join(MODES)})", field="modes")
    if not modes:
        raise InvalidInput(
            f"modes is empty: give at least one of {', '.join(MODES)}", field="modes"
        )
    for i, mode in enumerate(modes):
        if mode not in MODES:
            raise InvalidInput(
                f"modes[{i}] is {mode!r}, not a normalization mode; modes: {', '.join(MODES)} "
                "(naive copiers run beside every cell: naive=True)",
                field=f"modes[{i}]",
                value=str(mode),
            )
    if len(set(modes)) != len(modes):
        raise InvalidInput("modes has duplicates: list each mode once", field="modes")
    return list(modes)


def _cell_seed(seed: int, lead: int, profile: int, mode: int) -> int:
    """The cell's seed: the sweep's seed spawned by the cell's place in the grid."""
    ss = np.random.SeedSequence(seed, spawn_key=(lead, profile, mode))
    return int(ss.generate_state(1, np.uint32)[0])


# --------------------------------------------------------------------------- cells


def cell_cohort(cell: SweepCell) -> dict[str, Any]:
    """The followers of one cell: the profile in the cell's mode, and the naive baseline.

    Equities are those of :func:`levalign.samples.sample_cohort` drawn with the cell's seed
    (log-normal around 2,000 USDT, 50 to 500,000); naive copiers, when present, hold the same
    equities (ids ``n`` to ``2n - 1``) and take the naive profile in the replay.

    Returns
    -------
    dict
        Columns for :func:`~levalign.backtest.replay.backtest` (``id``, ``group``,
        ``equity``, ``mode`` and the profile's columns).
    """
    n = cell.followers
    equity = np.asarray(sample_cohort(n, cell.seed)["equity"], dtype=np.float64)
    copies = 2 if cell.naive else 1
    groups = [cell.mode_name] + ([NAIVE] if cell.naive else [])
    columns: dict[str, Any] = {
        "id": np.arange(copies * n, dtype=np.int64),
        "group": np.repeat(np.array(groups), n),
        "equity": np.tile(equity, copies),
        "mode": np.full(copies * n, cell.mode_name),
    }
    for key, value in cell.profile_items:
        columns[key] = np.full(copies * n, value)
    return columns


def run_cell(cell: SweepCell, lead: SweepLead, markets: Markets) -> list[dict[str, Any]]:
    """Replay one cell and return its summary rows (what a sweep task sends back).

    Parameters
    ----------
    cell
        The cell.
    lead
        The cell's lead (with bars and funding).
    markets
        The venue's markets.

    Returns
    -------
    list of dict
        One row per group (``naive`` first): the cell's keys (:data:`KEY_COLUMNS`) and the
        group's row of :meth:`~levalign.backtest.replay.BacktestResult.summary`.

    Raises
    ------
    InvalidInput
        What :func:`~levalign.backtest.replay.backtest` raises.
    """
    result = backtest(
        lead.history,
        lead.bars,
        cell_cohort(cell),
        markets,
        funding=lead.funding,
        taker_fee=cell.taker_fee,
        sample_minutes=cell.sample_minutes,
    )
    keys = {
        "lead": cell.lead_name,
        "profile": cell.profile,
        "profile_json": cell.profile_json(),
        "mode": cell.mode_name,
        "seed": cell.seed,
    }
    return [{**keys, **row} for row in result.summary()]


# --------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False)
class SweepResult:
    """The sweep's summary: one row per cell and group, in grid order.

    Attributes
    ----------
    table
        A :class:`pyarrow.Table`: :data:`KEY_COLUMNS` (``lead``, ``profile`` index,
        ``profile_json``, ``mode``, ``seed``, ``group``) then the summary columns of
        :meth:`~levalign.backtest.replay.BacktestResult.summary`.
    cells
        Number of grid cells.
    """

    table: Any
    cells: int

    def rows(self) -> list[dict[str, Any]]:
        """The rows as dicts (NaN kept)."""
        return list(self.table.to_pylist())

    def to_pandas(self) -> Any:
        """The table as a :class:`pandas.DataFrame`."""
        return self.table.to_pandas()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``cells`` and ``rows`` (NaN and infinities as None)."""
        rows = [
            {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()}
            for r in self.rows()
        ]
        return {"cells": self.cells, "rows": rows}

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(), allow_nan=False)


def _table(rows: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    if not rows:
        return pa.table({})
    names = list(rows[0])
    columns: dict[str, Any] = {}
    for name in names:
        values = [r[name] for r in rows]
        if isinstance(values[0], float):
            columns[name] = pa.array(values, type=pa.float64())
        elif isinstance(values[0], bool):
            columns[name] = pa.array(values, type=pa.bool_())
        elif isinstance(values[0], int):
            columns[name] = pa.array(values, type=pa.int64())
        else:
            columns[name] = pa.array(values, type=pa.string())
    ordered = [*KEY_COLUMNS, *(n for n in names if n not in KEY_COLUMNS)]
    return pa.table({n: columns[n] for n in ordered})


# --------------------------------------------------------------------------- sweep


def sweep(  # noqa: PLR0913 - keyword-only options of a public function, each documented
    leads: Sequence[str | Path | SweepLead],
    profiles: Sequence[Mapping[str, Any]],
    modes: Sequence[str],
    *,
    markets: Markets | None = None,
    bars: Mapping[str, OHLC | str | Path] | None = None,
    funding: Mapping[str, FundingRates | str | Path] | None = None,
    followers_per_cell: int = 20,
    seed: int = 0,
    naive: bool = True,
    taker_fee: float = 0.0005,
    sample_minutes: int = 60,
    scheduler: str | None = None,
    n_workers: int = 2,
    processes: bool = True,
    serial: bool = False,
    progress: bool = False,
    connect_timeout: float = _DEFAULT_CONNECT_TIMEOUT,
) -> SweepResult:
    """Replay a grid of leads x follower profiles x modes, each cell a Dask task.

    See the module docstring for the cells, their seeds and what a task returns.

    Parameters
    ----------
    leads
        Sample names, lead-history files (with ``bars``) or :class:`SweepLead` objects.
    profiles
        Follower profiles: mappings of :data:`PROFILE_COLUMNS` to values (``"inf"`` is
        accepted for JSON's missing infinity).
    modes
        Normalization modes (:data:`levalign.normalize.MODES`).
    markets
        The venue's markets (default: the ``binance`` preset).
    bars, funding
        Bars and funding by lead (keyed as the lead is written in ``leads``).
    followers_per_cell
        Followers in each cell's mode (and as many naive copiers).
    seed
        The sweep's seed; each cell spawns its own from it.
    naive
        Run naive copiers beside every cell (group ``naive``).
    taker_fee, sample_minutes
        Replay settings (:func:`~levalign.backtest.replay.backtest`).
    scheduler
        Address of a running Dask scheduler (``tcp://HOST:8786``); default: a
        :class:`distributed.LocalCluster` of ``n_workers`` workers.
    n_workers, processes
        The local cluster's workers, and whether they are processes (else threads).
    serial
        Run the cells one after another in this process (no Dask), with the same cell function.
    progress
        Show a progress bar (rich, on stderr) as cells complete.
    connect_timeout
        Seconds to wait for ``scheduler``.

    Returns
    -------
    SweepResult

    Raises
    ------
    InvalidInput
        An empty grid, an unknown lead or mode, a profile column that is not one or a value out
        of range, ``followers_per_cell`` below 1, ``n_workers`` below 1, a malformed scheduler
        address; each names the field. A cell's replay may raise what
        :func:`~levalign.backtest.replay.backtest` raises.
    Retryable
        The scheduler did not answer within ``connect_timeout``.
    ConfigurationError
        The local cluster could not start.
    """
    mkts = load_markets("binance") if markets is None else markets
    if isinstance(leads, str | bytes) or not isinstance(leads, Sequence) or not leads:
        raise InvalidInput(
            "leads is empty: give at least one sample name or lead-history file", field="leads"
        )
    checked_profiles = _check_profiles(profiles)
    checked_modes = _check_modes(modes)
    for label, value in (("followers_per_cell", followers_per_cell), ("n_workers", n_workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInput(
                f"{label} must be a whole number of at least 1, got {value!r}",
                field=label,
                value=value,
            )
    bars_by = dict(bars or {})
    funding_by = dict(funding or {})
    resolved: list[SweepLead] = []
    for i, lead in enumerate(leads):
        key = lead.name if isinstance(lead, SweepLead) else str(lead)
        resolved.append(
            resolve_lead(
                lead, mkts, bars=bars_by.get(key), funding=funding_by.get(key), field=f"leads[{i}]"
            )
        )
    names = [lead.name for lead in resolved]
    if len(set(names)) != len(names):
        raise InvalidInput(
            f"two leads share a name ({', '.join(names)}): give each a distinct 'name'",
            field="leads",
        )
    cells = [
        SweepCell(
            lead=i,
            profile=j,
            mode=k,
            lead_name=lead.name,
            mode_name=mode,
            profile_items=items,
            followers=followers_per_cell,
            seed=_cell_seed(seed, i, j, k),
            naive=naive,
            taker_fee=taker_fee,
            sample_minutes=sample_minutes,
        )
        for i, lead in enumerate(resolved)
        for j, items in enumerate(checked_profiles)
        for k, mode in enumerate(checked_modes)
    ]
    if serial:
        per_cell = []
        with progress_bar(progress, len(cells), "sweep cells") as update:
            for n, cell in enumerate(cells):
                per_cell.append(run_cell(cell, resolved[cell.lead], mkts))
                update(n + 1)
    else:
        per_cell = _run_distributed(
            cells, resolved, mkts, scheduler, n_workers, processes, progress, connect_timeout
        )
    rows = [row for cell_rows in per_cell for row in cell_rows]
    return SweepResult(table=_table(rows), cells=len(cells))


def _run_distributed(  # noqa: PLR0913, PLR0917 - the private runner of sweep(), passed its options
    cells: list[SweepCell],
    leads: list[SweepLead],
    markets: Markets,
    scheduler: str | None,
    n_workers: int,
    processes: bool,
    progress: bool,
    connect_timeout: float,
) -> list[list[dict[str, Any]]]:
    """Run the cells as tasks on a local cluster or at ``scheduler``; results in cell order."""
    from contextlib import ExitStack

    require("backtest", "dask", "distributed")
    from distributed import Client, LocalCluster, as_completed

    with ExitStack() as stack:
        if scheduler is None:
            try:
                cluster = stack.enter_context(
                    LocalCluster(  # type: ignore[no-untyped-call]
                        n_workers=n_workers,
                        threads_per_worker=1,
                        processes=processes,
                        dashboard_address=":0",  # any free port: never clash with another cluster
                        silence_logs=logging.ERROR,
                    )
                )
            except (OSError, RuntimeError) as exc:
                raise ConfigurationError(
                    f"cannot start a local Dask cluster of {n_workers} workers: {exc}; "
                    "try fewer workers, serial=True, or a running scheduler",
                    field="n_workers",
                    value=n_workers,
                ) from exc
            client = stack.enter_context(Client(cluster))  # type: ignore[no-untyped-call]
        else:
            client = stack.enter_context(_connect(scheduler, connect_timeout))
        # ship each lead (bars included) and the markets to the workers once
        lead_futures = client.scatter(leads, broadcast=True)
        markets_future = client.scatter(markets, broadcast=True)
        futures = [
            client.submit(
                run_cell,
                cell,
                lead_futures[cell.lead],
                markets_future,
                key=f"levalign-sweep-cell-{cell.lead}-{cell.profile}-{cell.mode}-{cell.seed}",
                pure=False,
            )
            for cell in cells
        ]
        with progress_bar(progress, len(futures), "sweep cells") as update:
            for n, _ in enumerate(as_completed(futures)):  # type: ignore[no-untyped-call]
                update(n + 1)
        results: list[list[dict[str, Any]]] = client.gather(futures)
        return results


def _connect(address: str, timeout: float) -> Any:
    """A client of the scheduler at ``address``; clear errors when it is not there."""
    require("backtest", "dask", "distributed")
    from distributed import Client

    if "://" not in address:
        raise InvalidInput(
            f"scheduler must be an address like tcp://HOST:8786, got {address!r}",
            field="scheduler",
            value=address,
        )
    try:
        return Client(address, timeout=timeout, set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise Retryable(
            f"no Dask scheduler answered at {address} within {timeout:g} s: start one "
            "(dask scheduler) or check the address and the network; without a cluster, leave "
            "the scheduler out for a local one",
            field="scheduler",
            value=address,
        ) from exc
    except ValueError as exc:
        raise InvalidInput(
            f"scheduler address {address!r} is not valid: {exc}", field="scheduler", value=address
        ) from exc


# --------------------------------------------------------------------------- grid files


@dataclass(frozen=True)
class SweepGrid:
    """A grid read from JSON: the arguments of :func:`sweep` (see the module docstring)."""

    exchange: str
    leads: tuple[SweepLead, ...]
    profiles: tuple[Mapping[str, Any], ...]
    modes: tuple[str, ...]
    followers_per_cell: int
    seed: int
    naive: bool
    sample_minutes: int


def load_grid(grid: Mapping[str, Any], base: Path | None = None) -> SweepGrid:
    """Read and validate a grid (the parsed ``GRID.json``), loading every lead.

    Parameters
    ----------
    grid
        The grid object (module docstring, "Grid file").
    base
        Folder that relative paths are taken from (the grid file's).

    Returns
    -------
    SweepGrid

    Raises
    ------
    InvalidInput
        A missing or unknown key, an empty list, an unknown lead or mode, a bad profile; the
        field is the grid key (``leads[1]``, ``profiles[0].max_leverage``, ``modes[2]``).
    ConfigurationError
        An unknown exchange.
    """
    if not isinstance(grid, Mapping):
        raise InvalidInput("the grid must be a JSON object", field="grid")
    known = {
        "exchange",
        "leads",
        "bars",
        "funding",
        "profiles",
        "modes",
        "followers_per_cell",
        "seed",
        "naive",
        "sample_minutes",
    }
    unknown = sorted(set(grid) - known)
    if unknown:
        raise InvalidInput(
            unknown_key_message(str(unknown[0]), sorted(known), noun="grid key"),
            field=unknown[0],
        )
    for required in ("leads", "profiles", "modes"):
        if required not in grid:
            raise InvalidInput(f"the grid has no {required!r} list", field=required)
    folder = Path() if base is None else base
    exchange = str(grid.get("exchange", "binance"))
    markets = load_markets(exchange)
    raw_leads = grid["leads"]
    if not isinstance(raw_leads, list) or not raw_leads:
        raise InvalidInput(
            "leads is empty: give at least one sample name or lead-history file", field="leads"
        )
    bars_by = _path_map(grid.get("bars"), "bars")
    funding_by = _path_map(grid.get("funding"), "funding")
    leads: list[SweepLead] = []
    for i, entry in enumerate(raw_leads):
        where = f"leads[{i}]"
        if isinstance(entry, str):
            entry_obj: Mapping[str, Any] = {"lead": entry}
        elif isinstance(entry, Mapping) and isinstance(entry.get("lead"), str):
            entry_obj = entry
        else:
            raise InvalidInput(
                f"{where} must be a sample name, a file, or an object with 'lead' (and 'bars', "
                "'funding', 'name')",
                field=where,
            )
        text = entry_obj["lead"]
        lead_bars = entry_obj.get("bars", bars_by.get(text))
        lead_funding = entry_obj.get("funding", funding_by.get(text))
        leads.append(
            resolve_lead(
                text if text in SAMPLE_LEADS else beside(folder, text),
                markets,
                bars=beside(folder, lead_bars) if lead_bars is not None else None,
                funding=beside(folder, lead_funding) if lead_funding is not None else None,
                name=entry_obj.get("name") or (text if text in SAMPLE_LEADS else None),
                field=where,
            )
        )
    profiles = grid["profiles"]
    _check_profiles(profiles)
    modes = _check_modes(grid["modes"])
    return SweepGrid(
        exchange=exchange,
        leads=tuple(leads),
        profiles=tuple(profiles),
        modes=tuple(modes),
        followers_per_cell=_int(grid, "followers_per_cell", 20),
        seed=_int(grid, "seed", 0),
        naive=bool(grid.get("naive", True)),
        sample_minutes=_int(grid, "sample_minutes", 60),
    )


def _int(grid: Mapping[str, Any], key: str, default: int) -> int:
    value = grid.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{key} must be a whole number, got {value!r}", field=key, value=value)
    return value


def _path_map(value: Any, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidInput(f"{key} must map leads (as written in 'leads') to files", field=key)
    return {str(k): v for k, v in value.items()}


def sweep_grid(  # noqa: PLR0913 - keyword-only options of a public function, each documented
    grid: SweepGrid,
    *,
    scheduler: str | None = None,
    n_workers: int = 2,
    serial: bool = False,
    progress: bool = False,
    connect_timeout: float = _DEFAULT_CONNECT_TIMEOUT,
) -> SweepResult:
    """Run :func:`sweep` on a grid from :func:`load_grid`.

    Raises
    ------
    InvalidInput, Retryable, ConfigurationError
        As :func:`sweep`.
    """
    return sweep(
        list(grid.leads),
        list(grid.profiles),
        list(grid.modes),
        markets=load_markets(grid.exchange),
        followers_per_cell=grid.followers_per_cell,
        seed=grid.seed,
        naive=grid.naive,
        sample_minutes=grid.sample_minutes,
        scheduler=scheduler,
        n_workers=n_workers,
        serial=serial,
        progress=progress,
        connect_timeout=connect_timeout,
    )
