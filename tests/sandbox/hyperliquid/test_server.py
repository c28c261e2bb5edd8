"""The official hyperliquid-python-sdk, unmodified, against the sandbox over real sockets."""

from __future__ import annotations

import json
from typing import Any

import eth_account
import pytest
import requests
from eth_account.signers.local import LocalAccount
from hyperliquid.exchange import Exchange
from hyperliquid.info import Info
from hyperliquid.utils.error import ClientError, ServerError
from hyperliquid.utils.signing import get_timestamp_ms, sign_l1_action
from hyperliquid.utils.types import Cloid

from levalign.sandbox.hyperliquid import HyperliquidSandbox, SandboxConfig

from .conftest import STRANGER_KEY

CLOID = Cloid.from_int(42)
# handed to Info so that its constructor makes no request against a tight rate limit
META: Any = {"universe": [{"name": "BTC", "szDecimals": 5, "maxLeverage": 40}]}
SPOT_META: Any = {"universe": [], "tokens": []}
GTC: Any = {"limit": {"tif": "Gtc"}}


def test_info_at_start(info: Info, alice: LocalAccount):
    meta = info.meta()
    assert meta["universe"][0] == {
        "szDecimals": 5,
        "name": "BTC",
        "maxLeverage": 40,
        "marginTableId": 1,
    }
    assert info.all_mids()["BTC"] == "20000.0"
    state = info.user_state(alice.address)
    assert state["marginSummary"]["accountValue"] == "1000.0"
    assert state["assetPositions"] == []
    ctxs = info.meta_and_asset_ctxs()
    assert ctxs[1][0]["markPx"] == "20000.0"
    assert info.spot_meta()["tokens"][0]["name"] == "USDC"
    book = info.l2_snapshot("BTC")
    assert [[level["px"] for level in side] for side in book["levels"]] == [
        ["20000.0"],
        ["20000.0"],
    ]


def test_order_with_cloid_fills_and_is_found_by_cloid(
    info: Info, exchange: Exchange, alice: LocalAccount
):
    result = exchange.order("BTC", True, 0.01, 20100, GTC, cloid=CLOID)
    # fills at the mid 20000; fee 20000 * 0.01 * 0.00045 = 0.09
    assert result == {
        "status": "ok",
        "response": {
            "type": "order",
            "data": {
                "statuses": [
                    {
                        "filled": {
                            "totalSz": "0.01",
                            "avgPx": "20000.0",
                            "oid": 1,
                            "cloid": CLOID.to_raw(),
                        }
                    }
                ]
            },
        },
    }
    status = info.query_order_by_cloid(alice.address, CLOID)
    assert status["status"] == "order"
    assert status["order"]["status"] == "filled"
    assert status["order"]["order"]["cloid"] == CLOID.to_raw()
    fills = info.user_fills(alice.address)
    assert [(f["side"], f["sz"], f["px"], f["fee"], f["dir"]) for f in fills] == [
        ("B", "0.01", "20000.0", "0.09", "Open Long")
    ]
    assert info.user_state(alice.address)["marginSummary"]["accountValue"] == "999.91"
    unknown = info.query_order_by_cloid(alice.address, Cloid.from_int(43))
    assert unknown == {"status": "unknownOid"}


def test_market_open_then_close(
    sandbox: HyperliquidSandbox, info: Info, exchange: Exchange, alice: LocalAccount
):
    opened = exchange.market_open("BTC", True, 0.01)
    assert opened["response"]["data"]["statuses"][0]["filled"]["avgPx"] == "20000.0"
    sandbox.set_mids({"BTC": "21000"})
    closed = exchange.market_close("BTC")
    assert closed["response"]["data"]["statuses"][0]["filled"]["totalSz"] == "0.01"
    # closed PnL (21000 - 20000) * 0.01 = 10
    assert info.user_fills(alice.address)[0]["closedPnl"] == "10.0"
    assert info.user_state(alice.address)["assetPositions"] == []


def test_resting_order_cancel(info: Info, exchange: Exchange, alice: LocalAccount):
    resting = exchange.order("BTC", True, 0.01, 19000, GTC)
    oid = resting["response"]["data"]["statuses"][0]["resting"]["oid"]
    assert [o["oid"] for o in info.open_orders(alice.address)] == [oid]
    assert exchange.cancel("BTC", oid)["response"]["data"]["statuses"] == ["success"]
    again = exchange.cancel("BTC", oid)
    assert again["response"]["data"]["statuses"] == [
        {"error": "Order was never placed, already canceled, or filled. asset=0"}
    ]
    by_cloid = exchange.order("BTC", True, 0.01, 19000, GTC, cloid=CLOID)
    assert "resting" in by_cloid["response"]["data"]["statuses"][0]
    assert exchange.cancel_by_cloid("BTC", CLOID)["response"]["data"]["statuses"] == ["success"]
    assert info.open_orders(alice.address) == []


def test_update_leverage(info: Info, exchange: Exchange, alice: LocalAccount):
    assert exchange.update_leverage(5, "BTC") == {"status": "ok", "response": {"type": "default"}}
    assert exchange.update_leverage(50, "BTC") == {
        "status": "err",
        "response": "Invalid leverage value.",
    }
    exchange.order("BTC", True, 0.01, 20000, GTC)
    position = info.user_state(alice.address)["assetPositions"][0]["position"]
    # margin 0.01 * 20000 / 5 = 40
    assert position["leverage"] == {"type": "cross", "value": 5}
    assert position["marginUsed"] == "40.0"


def test_isolated_margin_through_the_sdk(info: Info, exchange: Exchange, alice: LocalAccount):
    assert exchange.update_leverage(10, "BTC", is_cross=False)["status"] == "ok"
    exchange.order("BTC", True, 0.01, 20000, GTC)
    assert exchange.update_isolated_margin(5, "BTC")["status"] == "ok"
    position = info.user_state(alice.address)["assetPositions"][0]["position"]
    # 0.01 * 20000 / 10 = 20, plus 5
    assert position["marginUsed"] == "25.0"


def test_rules_through_the_sdk(exchange: Exchange):
    def error(sz: float, px: float, reduce_only: bool = False) -> Any:
        result = exchange.order("BTC", not reduce_only, sz, px, GTC, reduce_only=reduce_only)
        return result["response"]["data"]["statuses"][0].get("error")

    assert error(0.0004, 20000) == "Order must have minimum value of $10. asset=0"
    assert error(0.01, 20000.5) == "Price must be divisible by tick size. asset=0"
    assert error(0.01, 19000, reduce_only=True) == (
        "Reduce only order would increase position. asset=0"
    )
    # 1.1 BTC at 20000 / 20x = 1100 of margin > 1000 free
    assert error(1.1, 20000) == "Insufficient margin to place order. asset=0"


def test_unknown_signer_is_refused(sandbox: HyperliquidSandbox):
    stranger = eth_account.Account.from_key(STRANGER_KEY)
    result = Exchange(stranger, sandbox.base_url).order("BTC", True, 0.01, 20000, GTC)
    assert result == {
        "status": "err",
        "response": f"User or API Wallet {stranger.address.lower()} does not exist.",
    }


def _signed_order(wallet: LocalAccount, sz: str) -> dict[str, Any]:
    action = {
        "type": "order",
        "orders": [{"a": 0, "b": True, "p": "20000", "s": sz, "r": False, "t": GTC}],
        "grouping": "na",
    }
    nonce = get_timestamp_ms()
    signature = sign_l1_action(wallet, action, None, nonce, None, False)
    return {"action": action, "nonce": nonce, "signature": signature, "vaultAddress": None}


def test_tampered_action_recovers_another_signer(sandbox: HyperliquidSandbox, alice: LocalAccount):
    payload = _signed_order(alice, "0.01")
    payload["action"]["orders"][0]["s"] = "0.02"  # changed after signing
    result = requests.post(f"{sandbox.base_url}/exchange", json=payload, timeout=10).json()
    assert result["status"] == "err"
    assert result["response"].startswith("User or API Wallet 0x")
    assert alice.address.lower() not in result["response"]
    assert sandbox.orders()[0]["outcome"] == "refused"


def test_replayed_nonce_is_refused(sandbox: HyperliquidSandbox, alice: LocalAccount):
    payload = _signed_order(alice, "0.01")
    first = requests.post(f"{sandbox.base_url}/exchange", json=payload, timeout=10).json()
    second = requests.post(f"{sandbox.base_url}/exchange", json=payload, timeout=10).json()
    assert first["status"] == "ok"
    assert second == {
        "status": "err",
        "response": f"Invalid nonce: duplicate nonce {payload['nonce']}",
    }
    assert [e["outcome"] for e in sandbox.orders()] == ["filled", "refused"]


def test_nonce_outside_the_window_is_refused(sandbox: HyperliquidSandbox, alice: LocalAccount):
    payload = _signed_order(alice, "0.01")
    sandbox.advance_clock(3 * 86_400_000)  # the nonce is now 3 days old
    result = requests.post(f"{sandbox.base_url}/exchange", json=payload, timeout=10).json()
    assert result["status"] == "err"
    assert result["response"].startswith("Invalid nonce")


def test_approved_agent_trades_for_its_user(
    sandbox: HyperliquidSandbox, info: Info, exchange: Exchange, alice: LocalAccount
):
    approved, agent_key = exchange.approve_agent("copier")
    assert approved == {"status": "ok", "response": {"type": "default"}}
    agent = eth_account.Account.from_key(agent_key)
    as_agent = Exchange(agent, sandbox.base_url, account_address=alice.address)
    result = as_agent.order("BTC", True, 0.01, 20000, GTC)
    assert "filled" in result["response"]["data"]["statuses"][0]
    assert info.user_state(alice.address)["assetPositions"][0]["position"]["szi"] == "0.01"
    assert sandbox.orders()[0]["signer"] == agent.address.lower()
    assert sandbox.orders()[0]["user"] == alice.address.lower()


def test_http_faults(
    sandbox: HyperliquidSandbox, info: Info, exchange: Exchange, alice: LocalAccount
):
    sandbox.inject("http_429", path="/info")
    with pytest.raises(ClientError) as too_many:
        info.all_mids()
    assert too_many.value.status_code == 429
    sandbox.inject("http_5xx", status=502, path="/exchange")
    with pytest.raises(ServerError) as bad_gateway:
        exchange.order("BTC", True, 0.01, 20000, GTC, cloid=CLOID)
    assert bad_gateway.value.status_code == 502
    assert sandbox.orders() == []  # refused before processing
    assert info.all_mids()["BTC"] == "20000.0"  # each fault fired once
    assert [(f["kind"], f["fired"]) for f in sandbox.faults()] == [("http_429", 1), ("http_5xx", 1)]


def test_lost_response_order_is_accepted(
    sandbox: HyperliquidSandbox, info: Info, exchange: Exchange, alice: LocalAccount
):
    sandbox.inject("lose_response", action="order")
    with pytest.raises(requests.exceptions.ConnectionError):
        exchange.order("BTC", True, 0.01, 20000, GTC, cloid=CLOID)
    status = info.query_order_by_cloid(alice.address, CLOID)
    assert status["order"]["status"] == "filled"
    assert [e["cloid"] for e in sandbox.orders()] == [CLOID.to_raw()]


def test_control_plane_over_http(sandbox: HyperliquidSandbox, info: Info):
    base = f"{sandbox.base_url}/_sandbox"
    user = "0x00000000000000000000000000000000000000bb"
    funded = requests.post(f"{base}/fund", json={"user": user, "usdc": "250.5"}, timeout=10)
    assert funded.json() == [{"user": user, "balance": "250.5"}]
    assert info.user_state(user)["withdrawable"] == "250.5"
    mids = requests.post(f"{base}/mids", json={"mids": {"ETH": "1600.55"}}, timeout=10).json()
    assert mids["ETH"] == "1600.6"  # 5 significant figures
    fault = requests.post(f"{base}/faults", json={"kind": "http_429", "count": 2}, timeout=10)
    assert fault.json()["count"] == 2
    assert requests.delete(f"{base}/faults", timeout=10).json() == []
    bad = requests.post(f"{base}/faults", json={"kind": "meteor"}, timeout=10)
    assert bad.status_code == 400
    assert "unknown fault kind" in bad.json()["error"]
    status = requests.get(f"{base}/status", timeout=10).json()
    assert status["accounts"] == 2
    assert json.loads(requests.get(f"{base}/orders", timeout=10).text) == []


def test_http_delay_holds_the_response_back_once(sandbox: HyperliquidSandbox, info: Info):
    sandbox.inject("http_delay", delay_ms=200, action="allMids")
    assert info.all_mids()["BTC"] == "20000.0"
    assert info.meta()["universe"][0]["name"] == "BTC"  # not an allMids request: not delayed
    assert [(f["kind"], f["fired"]) for f in sandbox.faults()] == [("http_delay", 1)]


def test_agent_approved_through_the_control_plane(
    sandbox: HyperliquidSandbox, info: Info, alice: LocalAccount
):
    agent = eth_account.Account.from_key(STRANGER_KEY)
    url = f"{sandbox.base_url}/_sandbox/agent"
    requests.post(url, json={"user": alice.address, "agent": agent.address}, timeout=10)
    result = Exchange(agent, sandbox.base_url).order("BTC", False, 0.01, 19000, GTC)
    assert "filled" in result["response"]["data"]["statuses"][0]
    assert info.user_state(alice.address)["assetPositions"][0]["position"]["szi"] == "-0.01"


def test_order_log_paging_and_receive_times(sandbox: HyperliquidSandbox, exchange: Exchange):
    exchange.order("BTC", True, 0.01, 20000, GTC, cloid=Cloid.from_int(1))
    stepped = sandbox.step(1)  # no script: nothing plays, but the publish time is reported
    exchange.order("BTC", True, 0.01, 20000, GTC, cloid=Cloid.from_int(2))
    assert [e["seq"] for e in sandbox.orders()] == [1, 2]
    later = sandbox.orders(after=1)
    assert [e["cloid"] for e in later] == [Cloid.from_int(2).to_raw()]
    # the second order was sent after step() returned: received after the publish
    assert later[0]["received_at"] >= stepped["published_at"]
    over_http = requests.get(f"{sandbox.base_url}/_sandbox/orders?after=1", timeout=10).json()
    assert over_http == later


def test_rest_weight_limit(alice: LocalAccount):
    # budget 10: allMids weighs 2 (five fit), an unbatched order 1
    config = SandboxConfig(fund={alice.address: 1000}, rest_weight_per_minute=10)
    with HyperliquidSandbox(config) as sb:
        info = Info(sb.base_url, skip_ws=True, meta=META, spot_meta=SPOT_META)
        for _ in range(5):
            info.all_mids()
        with pytest.raises(ClientError) as limited:
            info.all_mids()
        assert limited.value.status_code == 429
        payload = _signed_order(alice, "0.01")
        assert requests.post(f"{sb.base_url}/exchange", json=payload, timeout=10).status_code == 429
