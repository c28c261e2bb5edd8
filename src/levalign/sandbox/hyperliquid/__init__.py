"""A local Hyperliquid: the exchange's public API on 127.0.0.1, for trying configs and for tests.

REST ``POST /info`` and ``POST /exchange`` and the websocket ``/ws`` speak Hyperliquid's wire
format (field names, error strings, signature scheme), so the official
``hyperliquid-python-sdk`` runs against it unmodified. A lead-history file plays as a lead
account's fills over the bundled candles; follower accounts are funded by configuration or
through the control plane under ``/_sandbox/``, which also injects faults and serves the log
of every order received. See docs/sandbox.md.

>>> from levalign.sandbox.hyperliquid import HyperliquidSandbox, SandboxConfig
>>> with HyperliquidSandbox(SandboxConfig(fund={"0xabc...": 1000})) as sb:  # doctest: +SKIP
...     info = Info(sb.base_url, skip_ws=True)
"""

from levalign._extras import require

require("live", "aiohttp", "eth_account", "eth_utils", "msgpack", "coincurve")

from levalign.sandbox.hyperliquid._server import (  # noqa: E402 (after the check above)
    DEFAULT_LEAD,
    FAULT_KINDS,
    HyperliquidSandbox,
    SandboxConfig,
    serve,
)

__all__ = ["DEFAULT_LEAD", "FAULT_KINDS", "HyperliquidSandbox", "SandboxConfig", "serve"]
