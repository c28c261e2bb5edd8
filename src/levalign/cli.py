"""Command line: JSON in, JSON out; errors on stderr with a non-zero exit.

``levalign margin ACCOUNT.json``, ``levalign normalize REQUEST.json``, ``levalign demo``,
``levalign vol DATA.csv``, ``levalign simulate SPEC.json``, ``levalign align SPEC.json``.
Exit codes: 0 ok, 2 invalid input, 3 rejected, 4 configuration, 5 retryable.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from levalign._files import (
    FIGURE_SUFFIXES,
    check_output,
    read_table,
    read_text,
    write_atomic,
)
from levalign._paths import beside
from levalign.errors import ConfigurationError, InvalidInput, LevalignError, Rejected, Retryable

if TYPE_CHECKING:  # imported lazily at run time: each command loads only what it needs
    from levalign.markets import Markets
    from levalign.normalize import NormalizeResult
    from levalign.schemas import DeriskRequest, NormalizeRequest

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="levalign: leverage normalization for copy trading, and liquidation-aware leverage.",
)

_EXIT_CODES: dict[type[LevalignError], int] = {
    InvalidInput: 2,
    Rejected: 3,
    ConfigurationError: 4,
    Retryable: 5,
}


def _fail(err: LevalignError) -> typer.Exit:
    typer.echo(f"error: {err.message}", err=True)
    typer.echo(json.dumps({"error": err.to_dict()}, allow_nan=False), err=True)
    return typer.Exit(code=_EXIT_CODES.get(type(err), 1))


def _read_json(path: Path, what: str) -> Any:
    text = read_text(path, what, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{what} {str(path)!r} is not valid JSON: {exc.msg} "
            f"at line {exc.lineno} column {exc.colno}",
            field=what,
        ) from exc


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _clean(value: Any) -> Any:
    """Replace non-finite floats by None: JSON has no NaN or infinity."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _print_json(data: Any) -> None:
    text = json.dumps(_clean(data), indent=2, default=_json_default, allow_nan=False)
    sys.stdout.write(text + "\n")


def _relative_to(base: Path, value: str | None) -> str | None:
    """Resolve a file reference inside a request relative to the request's folder."""
    return None if value is None else beside(base, value)


@app.command()
def margin(
    account_file: Annotated[
        Path,
        typer.Argument(
            metavar="ACCOUNT.json", help="Account: exchange, wallet_balance, positions."
        ),
    ],
) -> None:
    """Margin, effective leverage and liquidation price of every position in an account."""
    from levalign.margin import margin_report
    from levalign.markets import load_markets
    from levalign.schemas import Account, parse

    try:
        acct = parse(Account, _read_json(account_file, "account"), root="account")
        base = account_file.parent
        markets = load_markets(
            acct.exchange,
            markets=_relative_to(base, acct.markets),
            tiers=_relative_to(base, acct.tiers),
        )
        report = margin_report(acct, markets)
    except LevalignError as err:
        raise _fail(err) from None
    _print_json(report.model_dump())


# options shared by the commands that size a cohort (normalize, derisk)
_FollowersFile = Annotated[
    Path | None,
    typer.Option(help="Cohort as Parquet or CSV (instead of the request's followers)."),
]
_OrdersOut = Annotated[
    Path | None,
    typer.Option(help="Write orders here (.parquet, .csv or .json); stdout then has the summary."),
]


@app.command()
def normalize(
    request_file: Annotated[
        Path,
        typer.Argument(metavar="REQUEST.json", help="exchange, markets/tiers, event, followers."),
    ],
    followers: _FollowersFile = None,
    out: _OrdersOut = None,
) -> None:
    """Size one lead event for every follower; prints {orders, summary}."""
    from levalign.markets import load_markets
    from levalign.normalize import normalize as run
    from levalign.schemas import NormalizeRequest, parse

    try:
        _check_out(out)
        req = parse(NormalizeRequest, _read_json(request_file, "request"), root="request")
        markets, cohort = _venue_and_cohort(req, request_file.parent, followers)
        lead_markets = load_markets(req.lead_exchange) if req.lead_exchange else None
        result = run(req.event, cohort, markets, lead_markets=lead_markets)
        _print_result(result, out)
    except LevalignError as err:
        raise _fail(err) from None


@app.command()
def derisk(
    request_file: Annotated[
        Path,
        typer.Argument(
            metavar="REQUEST.json",
            help="exchange, markets/tiers, symbol, price, followers (with derisk_distance).",
        ),
    ],
    followers: _FollowersFile = None,
    out: _OrdersOut = None,
) -> None:
    """De-risk the followers the price put inside their floor; prints {orders, summary}."""
    from levalign.normalize import derisk as run
    from levalign.schemas import DeriskRequest, parse

    try:
        _check_out(out)
        req = parse(DeriskRequest, _read_json(request_file, "request"), root="request")
        markets, cohort = _venue_and_cohort(req, request_file.parent, followers)
        result = run(req.symbol, req.price, cohort, markets)
        _print_result(result, out)
    except LevalignError as err:
        raise _fail(err) from None


def _venue_and_cohort(
    req: NormalizeRequest | DeriskRequest, base: Path, followers: Path | None
) -> tuple[Markets, Any]:
    """The followers' markets and cohort of a normalize or derisk request."""
    from levalign.markets import load_markets

    markets = load_markets(
        req.exchange,
        markets=_relative_to(base, req.markets),
        tiers=_relative_to(base, req.tiers),
        symbol_map=req.symbol_map,
    )
    if followers is not None:
        return markets, read_table(followers, "followers file", "followers")
    if req.followers is not None:
        return markets, list(req.followers)
    raise InvalidInput(
        "no followers: put a 'followers' list in the request or pass --followers FILE",
        field="request.followers",
    )


def _print_result(result: NormalizeResult, out: Path | None) -> None:
    if out is not None:
        write_table(_orders_table(result), out)
        _print_json({"summary": result.summary(), "out": str(out)})
    else:
        _print_json({"orders": result.orders(), "summary": result.summary()})


def _orders_table(result: NormalizeResult) -> Any:
    """The orders as written to ``--out``: ``side`` and ``reasons`` as names, with the bits.

    Columns: the result's columns, ``side`` as ``buy``/``sell`` (null: no order),
    ``reasons`` as the comma-separated names of the bits set and ``reason_bits`` as the
    integer, and ``invalid_field``/``invalid_reason`` (null unless the row is invalid).
    """
    import numpy as np
    import pyarrow as pa

    from levalign.normalize import Reason

    table = result.to_arrow()
    side = np.asarray(result["side"])
    names = pa.array(np.where(side > 0, "buy", "sell"), mask=side == 0)
    bits = np.asarray(result["reasons"])
    values, index = np.unique(bits, return_inverse=True)
    text = np.array([",".join(Reason.names(int(v))) for v in values], dtype=object)[index]
    table = table.set_column(table.schema.get_field_index("side"), "side", names)
    at = table.schema.get_field_index("reasons")
    table = table.set_column(at, "reasons", pa.array(text, type=pa.string()))
    table = table.add_column(at + 1, "reason_bits", pa.array(bits))
    for name in ("invalid_field", "invalid_reason"):
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(len(table), pa.string()))
    return table


def _check_out(out: Path | None) -> None:
    """Check ``--out`` before any work: a table suffix, an existing folder, not a folder."""
    if out is not None:
        check_output(out, _TABLE_SUFFIXES, "out")


@app.command()
def demo(
    followers: Annotated[
        int | None,
        typer.Option(
            help="Cohort size, 1 to 1,000,000 (default: 1,400 for the backtest, 10,000 for "
            "--single-event)."
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the generated cohort (a whole number, 0 or more).")
    ] = 7,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the report (.html or .png; default levalign-report.html). "
            "The backtest demo only: --single-event prints its figures."
        ),
    ] = None,
    single_event: Annotated[
        bool,
        typer.Option(
            "--single-event",
            help="Only normalize one lead event (a 12x long before the crash) for the cohort.",
        ),
    ] = False,
) -> None:
    """Replay a 15x lead through the March 2023 crash: naive copiers against every mode."""
    try:
        _check_demo_options(followers, seed, report, single_event)
        if single_event:
            from levalign.demo import run_demo

            run_demo(followers=followers or 10_000, seed=seed)
        else:
            from levalign.backtest.demo import run_backtest_demo

            run_backtest_demo(
                followers=followers or 1_400,
                seed=seed,
                report=report or Path("levalign-report.html"),
            )
    except LevalignError as err:
        raise _fail(err) from None


MAX_DEMO_FOLLOWERS = 1_000_000
"""Largest cohort ``levalign demo --followers`` generates."""


def _check_demo_options(
    followers: int | None, seed: int, report: Path | None, single_event: bool
) -> None:
    """Refuse demo options that would be ignored or fail after the work."""
    if followers is not None and not 1 <= followers <= MAX_DEMO_FOLLOWERS:
        raise InvalidInput(
            f"--followers must be from 1 to {MAX_DEMO_FOLLOWERS:,}, got {followers:,}",
            field="followers",
            value=followers,
        )
    if seed < 0:
        raise InvalidInput(
            f"--seed must be a whole number, 0 or more, got {seed}", field="seed", value=seed
        )
    if report is not None and single_event:
        raise InvalidInput(
            "--report is written by the backtest demo; --single-event prints its figures and "
            "writes no report: drop one of the two options",
            field="report",
            value=str(report),
        )
    check_output(report or Path("levalign-report.html"), FIGURE_SUFFIXES, "report")


@app.command()
def vol(
    data_file: Annotated[
        Path,
        typer.Argument(
            metavar="DATA.csv|DATA.parquet",
            help="OHLC bars: a timestamp column (timestamp, open_time, time or date) and "
            "open, high, low, close.",
        ),
    ],
    horizon_hours: Annotated[
        float, typer.Option(help="Forecast horizon in hours (24/7, 8,760 hours a year).")
    ] = 24.0,
    resample_minutes: Annotated[
        int | None,
        typer.Option(
            help="Aggregate to bars of this many minutes first. Default: bars finer than an "
            "hour go to the coarsest of 60/30/15/10/5 minutes keeping 500 bars."
        ),
    ] = None,
) -> None:
    """Annualized volatility by five estimators and its forecast over a horizon."""
    from levalign.risk.ohlc import load_ohlc
    from levalign.risk.volatility import estimate_volatility

    try:
        estimates = estimate_volatility(load_ohlc(data_file), resample_minutes)
        report = estimates.to_dict(horizon_hours)
    except LevalignError as err:
        raise _fail(err) from None
    _print_json(report)


_PLOT_OPTION = typer.Option(
    help="Also draw the result: .html (interactive, self-contained) or .png.",
)


def _check_plot(plot: Path | None) -> None:
    """Check ``--plot`` before the simulation: .html or .png, in an existing folder."""
    if plot is not None:
        check_output(plot, FIGURE_SUFFIXES, "plot")


def _progress_wanted() -> bool:
    """Progress bars on long runs, only when a person is watching a terminal."""
    return sys.stderr.isatty()


@app.command()
def simulate(
    spec_file: Annotated[
        Path,
        typer.Argument(
            metavar="SPEC.json",
            help="model, spot, side + liquidation_price or account, horizon_days, paths, steps, "
            "seed, funding_rate.",
        ),
    ],
    plot: Annotated[Path | None, _PLOT_OPTION] = None,
) -> None:
    """Monte Carlo liquidation risk of a position or an account under a price model."""
    from levalign.risk import monte_carlo as mc
    from levalign.risk.fitted import model_from_spec_or_data
    from levalign.schemas import SimulateSpec, parse

    try:
        _check_plot(plot)
        spec = parse(SimulateSpec, _read_json(spec_file, "spec"), root="spec")
        model = model_from_spec_or_data(spec.model, spec_file.parent)
        account = _resolve_account(spec.account, spec_file.parent)
        common: dict[str, Any] = {
            "side": spec.side,
            "liquidation_price": spec.liquidation_price,
            "account": account,
            "horizon_days": spec.horizon_days,
            "paths": spec.paths,
            "steps": spec.steps,
            "seed": spec.seed,
            "funding_rate": spec.funding_rate,
        }
        # one run gives the summary and, for the plot, the paths behind it
        result, outcomes = mc.simulate_outcomes(
            model,
            spec.spot,
            var_level=spec.var_level,
            progress=_progress_wanted(),
            wealth_floor=mc.WEALTH_FLOOR,
            **common,
        )
        if plot is not None:
            from levalign.risk.figures import simulation_figure

            simulation_figure(result, outcomes, plot)
    except LevalignError as err:
        raise _fail(err) from None
    _print_json(result.to_dict())


@app.command()
def align(
    spec_file: Annotated[
        Path,
        typer.Argument(
            metavar="SPEC.json",
            help="model, spot, side, exchange, symbol, equity, horizon_days, "
            "max_liq_probability, max_es, max_leverage, paths, steps, seed.",
        ),
    ],
    plot: Annotated[Path | None, _PLOT_OPTION] = None,
) -> None:
    """The leverage that maximizes expected log growth within a follower's risk limits."""
    from levalign.markets import load_markets
    from levalign.risk.fitted import model_from_spec_or_data
    from levalign.risk.optimal import optimal_leverage
    from levalign.schemas import AlignSpec, parse

    try:
        _check_plot(plot)
        spec = parse(AlignSpec, _read_json(spec_file, "spec"), root="spec")
        base = spec_file.parent
        markets = load_markets(
            spec.exchange,
            markets=_relative_to(base, spec.markets),
            tiers=_relative_to(base, spec.tiers),
        )
        market = markets[markets.resolve(spec.symbol, field="spec.symbol")]
        result = optimal_leverage(
            model_from_spec_or_data(spec.model, base),
            spec.spot,
            market,
            spec.equity,
            side=spec.side,
            horizon_days=spec.horizon_days,
            max_liq_probability=spec.max_liq_probability,
            max_es=spec.max_es,
            es_level=spec.es_level,
            max_leverage=spec.max_leverage,
            funding_rate=spec.funding_rate,
            paths=spec.paths,
            steps=spec.steps,
            seed=spec.seed,
            grid_points=spec.grid_points,
            progress=_progress_wanted(),
        )
        if plot is not None:
            from levalign.risk.figures import alignment_figure

            alignment_figure(result, spec.max_liq_probability, spec.max_es, plot)
    except LevalignError as err:
        raise _fail(err) from None
    _print_json(result.to_dict())


@app.command()
def backtest(  # noqa: PLR0913, PLR0917 - one parameter per command-line option (Typer)
    lead_file: Annotated[
        Path,
        typer.Argument(
            metavar="LEAD.csv", help="The lead's history (CSV or JSONL, docs/lead_history.md)."
        ),
    ],
    prices: Annotated[Path, typer.Option(help="OHLC bars of the lead's market (CSV/Parquet).")],
    followers: Annotated[
        Path | None,
        typer.Option(
            help="Cohort (Parquet/CSV) with an optional 'group' column ('naive' marks naive "
            "copiers). Default: naive copiers beside every mode (--cohort-size rows)."
        ),
    ] = None,
    cohort_size: Annotated[int, typer.Option(help="Rows of the default cohort.")] = 1_400,
    funding: Annotated[
        Path | None, typer.Option(help="Funding rates (date, funding_rate), 8-hourly.")
    ] = None,
    exchange: Annotated[str, typer.Option(help="Venue of the lead and followers.")] = "binance",
    report: Annotated[
        Path | None, typer.Option(help="Write the report: .html (self-contained) or .png.")
    ] = None,
    sample_minutes: Annotated[int, typer.Option(help="Sampling step of the curves.")] = 60,
    mark_prices: Annotated[
        Path | None,
        typer.Option(
            help="Mark-price klines on the same grid as --prices: liquidation, de-risking, "
            "funding and equity use the mark (fills stay at the lead's prices)."
        ),
    ] = None,
) -> None:
    """Replay a lead's history for a cohort of followers on real prices; prints a summary."""
    from levalign.backtest.replay import backtest as run
    from levalign.backtest.replay import naive_cohort
    from levalign.markets import load_markets

    try:
        if report is not None:
            check_output(report, FIGURE_SUFFIXES, "report")
        markets = load_markets(exchange)
        cohort: Any = (
            read_table(followers, "followers file", "followers")
            if followers is not None
            else naive_cohort(cohort_size, 7)
        )
        result = run(
            lead_file,
            prices,
            cohort,
            markets,
            funding=funding,
            sample_minutes=sample_minutes,
            mark_bars=mark_prices,
            progress=_progress_wanted(),
        )
        if report is not None:
            from levalign.backtest.report import write_report

            write_report(result, report)
    except LevalignError as err:
        raise _fail(err) from None
    _print_json(
        {
            "symbol": result.symbol,
            "lead": result.lead,
            "summary": result.summary(),
            "report": str(report) if report is not None else None,
        }
    )


@app.command()
def sweep(
    grid_file: Annotated[
        Path,
        typer.Argument(
            metavar="GRID.json",
            help="leads (sample names or files, with bars/funding), profiles, modes, "
            "followers_per_cell, seed (levalign.backtest.sweep).",
        ),
    ],
    scheduler: Annotated[
        str | None,
        typer.Option(help="A running Dask scheduler (tcp://HOST:8786); default a local cluster."),
    ] = None,
    workers: Annotated[int, typer.Option(help="Worker processes of the local cluster.")] = 2,
    serial: Annotated[
        bool, typer.Option("--serial", help="Run the cells in this process, without Dask.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Also write the summary table here (.parquet, .csv or .json)."),
    ] = None,
) -> None:
    """Replay a grid of leads x follower profiles x modes on Dask; prints the summary table."""
    from levalign.backtest.sweep import load_grid, sweep_grid

    try:
        _check_out(out)  # before the sweep, not after it
        grid = load_grid(_read_json(grid_file, "grid"), grid_file.parent)
        result = sweep_grid(
            grid,
            scheduler=scheduler,
            n_workers=workers,
            serial=serial,
            progress=_progress_wanted(),
        )
        if out is not None:
            write_table(result.table, out)
    except LevalignError as err:
        raise _fail(err) from None
    _print_json({**result.to_dict(), "out": str(out) if out is not None else None})


def _resolve_account(account: dict[str, Any] | None, base: Path) -> dict[str, Any] | None:
    """An inline account, with its markets/tiers file paths taken relative to the spec."""
    if account is None:
        return None
    out = dict(account)
    for key in ("markets", "tiers"):
        if isinstance(out.get(key), str):
            out[key] = _relative_to(base, out[key])
    return out


_TABLE_SUFFIXES = (".parquet", ".csv", ".json")


def write_table(table: Any, path: Path) -> None:
    """Write a pyarrow Table as Parquet, CSV or JSON rows, by extension, atomically."""
    suffix = check_output(path, _TABLE_SUFFIXES, "out")

    def write(tmp: Path) -> None:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, tmp)
        elif suffix == ".csv":
            import pyarrow.csv as pcsv

            pcsv.write_csv(table, tmp)
        else:
            rows = json.dumps(_clean(table.to_pylist()), default=_json_default, allow_nan=False)
            tmp.write_text(rows, encoding="utf-8")

    write_atomic(path, write, "out")


sandbox_app = typer.Typer(no_args_is_help=True, help="Local exchange sandboxes (docs/sandbox.md).")
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("hyperliquid")
def sandbox_hyperliquid(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free port).")] = 8080,
    lead: Annotated[Path | None, typer.Option(help="Lead-history file to play.")] = None,
    speed: Annotated[
        str, typer.Option(help="Script speed: 60 = 60x real time, max, 0 = on request.")
    ] = "60",
    fund: Annotated[list[str] | None, typer.Option(help="ADDRESS=USDC to fund (repeat).")] = None,
) -> None:
    """Serve a local Hyperliquid (REST /info, /exchange, websocket /ws) until Ctrl-C."""
    try:
        from levalign.sandbox.hyperliquid._cli import run  # checks the live extra first

        run(port=port, lead=lead, speed=speed, fund=fund or [])
    except LevalignError as err:
        raise _fail(err) from None


db_app = typer.Typer(no_args_is_help=True, help="The live copier's store: levalign db upgrade.")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(
    url: Annotated[
        str | None,
        typer.Option(help="sqlite:///PATH (default sqlite:///levalign.db) or postgresql://..."),
    ] = None,
) -> None:
    """Create the store's tables, or migrate them to the latest schema."""
    try:
        from levalign.engine.store import Store
    except ImportError as err:
        raise _fail(
            ConfigurationError(
                f"the store needs the live extra ({err.name} is missing): "
                "pip install 'levalign[live]'",
                field="extras",
            )
        ) from None
    try:
        with Store(url) as store:
            store.upgrade()
    except LevalignError as err:
        raise _fail(err) from None
    _print_json({"store": store.safe_url, "schema": "up to date"})


def _live_import_error(err: ImportError) -> typer.Exit:
    return _fail(
        ConfigurationError(
            f"the live copier needs the live extra ({err.name} is missing): "
            "pip install 'levalign[live]'",
            field="extras",
        )
    )


@app.command()
def copy(
    config: Annotated[Path, typer.Argument(help="The copier's TOML configuration.")],
) -> None:
    """Copy a lead's fills to followers until SIGTERM or Ctrl-C (docs/live.md)."""
    import logging

    try:
        from levalign.engine.config import load_config
        from levalign.engine.copier import run_copy
    except ImportError as err:
        raise _live_import_error(err) from None
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    try:
        stats = run_copy(load_config(config))
    except LevalignError as err:
        raise _fail(err) from None
    _print_json({"events": stats.events, "orders": stats.orders, "fills": stats.fills})


def _store_for(store: str | None, config: Path | None) -> Any:
    try:
        from levalign.engine.config import load_config
        from levalign.engine.store import Store
    except ImportError as err:
        raise _live_import_error(err) from None
    try:
        url = store if store is not None else load_config(config).store_url if config else None
        return Store(url)
    except LevalignError as err:
        raise _fail(err) from None


def _read_store(store: str | None, config: Path | None, read: Callable[[Any], Any]) -> Any:
    """``read(db)`` on the copier's store, a store error ending the command with its code."""
    with _store_for(store, config) as db:
        try:
            return read(db)
        except LevalignError as err:
            raise _fail(err) from None


_StoreOpt = Annotated[
    str | None, typer.Option("--store", help="Store URL (default: the config's, or levalign.db).")
]
_ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Read the store URL from it.")]
_JsonOpt = Annotated[bool, typer.Option("--json", help="JSON for programs.")]


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console().print(table)


@app.command()
def orders(
    store: _StoreOpt = None,
    config: _ConfigOpt = None,
    state: Annotated[str | None, typer.Option(help="Only orders in this state.")] = None,
    limit: Annotated[int, typer.Option(help="Most orders shown, newest first.")] = 50,
    json_out: _JsonOpt = False,
) -> None:
    """The copier's orders, newest first (from its store)."""
    rows = _read_store(store, config, lambda db: db.orders(state=state, limit=limit))
    if json_out:
        _print_json(rows)
        return
    cols = ["client_id", "follower_id", "leg", "symbol", "side", "amount", "state", "reason"]
    _table("orders", cols, [[r[c] for c in cols] for r in rows])


@app.command()
def followers(
    store: _StoreOpt = None,
    config: _ConfigOpt = None,
    json_out: _JsonOpt = False,
) -> None:
    """The followers, their status, equity and positions (from the copier's store)."""
    rows = _read_store(store, config, lambda db: db.followers())
    if json_out:
        _print_json(rows)
        return
    table = [
        [
            r["id"],
            r["status"],
            f"{r['equity']:.2f}",
            ", ".join(
                f"{s} {p['position']}" for s, p in r["positions"].items() if p["position"] != "0"
            ),
            r["status_reason"],
        ]
        for r in rows
    ]
    _table("followers", ["id", "status", "equity", "positions", "reason"], table)


def _status_of(db: Any) -> dict[str, Any]:
    """What ``levalign status`` shows, read from the store ``db``."""
    backlog = db.backlog()
    followers: dict[str, int] = {}
    for r in db.followers():
        followers[r["status"]] = followers.get(r["status"], 0) + 1
    return {
        "store": db.safe_url,
        "events": db.event_count(),
        "orders": db.order_counts(),
        "backlog": {
            "pending_reducing": backlog.pending_reducing,
            "pending_opening": backlog.pending_opening,
            "oldest_pending_ms": backlog.oldest_pending_ms,
        },
        "followers": followers,
    }


@app.command()
def status(
    store: _StoreOpt = None,
    config: _ConfigOpt = None,
    json_out: _JsonOpt = False,
) -> None:
    """Lead events, orders by state, the backlog and followers by status."""
    data = _read_store(store, config, _status_of)
    if json_out:
        _print_json(data)
        return
    rows = [["events", data["events"]]]
    rows += [[f"orders {k}", v] for k, v in sorted(data["orders"].items())]
    rows += [[f"backlog {k}", v] for k, v in data["backlog"].items()]
    rows += [[f"followers {k}", v] for k, v in sorted(data["followers"].items())]
    _table(f"levalign status ({data['store']})", ["what", "value"], rows)


keys_app = typer.Typer(no_args_is_help=True, help="Encrypted follower key files (file:PATH#NAME).")
app.add_typer(keys_app, name="keys")


@keys_app.command("new-key")
def keys_new_key() -> None:
    """Print a new file key: export it as LEVALIGN_KEYFILE_KEY."""
    try:
        from levalign.engine.credentials import new_file_key
    except ImportError as err:
        raise _live_import_error(err) from None
    typer.echo(new_file_key())


@keys_app.command("encrypt")
def keys_encrypt(
    keys: Annotated[Path, typer.Argument(help='JSON {"name": "0x<private key>", ...}.')],
    out: Annotated[Path, typer.Option(help="The encrypted file to write.")],
) -> None:
    """Encrypt a JSON file of API-wallet keys under the key in LEVALIGN_KEYFILE_KEY."""
    import os

    try:
        from levalign.engine.credentials import KEYFILE_ENV, encrypt_keys
    except ImportError as err:
        raise _live_import_error(err) from None
    try:
        file_key = os.environ.get(KEYFILE_ENV)
        if not file_key:
            raise ConfigurationError(
                f"export the file key in {KEYFILE_ENV} first (levalign keys new-key makes one)",
                field=KEYFILE_ENV,
            )
        data = _read_json(keys, "keys")
        if not isinstance(data, dict):
            raise InvalidInput('keys must be a JSON object {"name": "0x..."}', field="keys")
        encrypt_keys({str(k): str(v) for k, v in data.items()}, out, file_key)
    except LevalignError as err:
        raise _fail(err) from None
    _print_json({"written": str(out), "entries": len(data)})


def main() -> None:
    """Console-script entry point.

    Every error levalign raises on purpose exits with its code (2 to 5) and a message. Any
    other exception is a bug: it is reported in one line with exit code 1, without a
    traceback (``LEVALIGN_TRACEBACK=1`` shows it, for a bug report).
    """
    import os

    try:
        app()
    except Exception as exc:
        if os.environ.get("LEVALIGN_TRACEBACK"):
            raise
        typer.echo(
            f"internal error (a bug in levalign, please report it with the command and its "
            f"input files): {type(exc).__name__}: {exc}",
            err=True,
        )
        sys.exit(1)
