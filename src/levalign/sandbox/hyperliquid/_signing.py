"""Hyperliquid's signature schemes, verified: who signed an ``/exchange`` request.

L1 actions (order, cancel, updateLeverage ...) are signed as a *phantom agent*
(Hyperliquid docs, "Signing"; the official Python SDK's ``utils/signing.py``):

* ``h = keccak256(msgpack(action) ‖ nonce as 8 bytes big-endian ‖ vault flag
  [‖ vault address] [‖ 0x00 ‖ expiresAfter as 8 bytes])``, the vault flag being ``0x00``
  without a vault address and ``0x01`` followed by its 20 bytes with one;
* the EIP-712 message ``Agent{source, connectionId = h}`` in the domain ``Exchange``,
  version 1, chain id 1337, verifying contract ``0x0``; ``source`` is ``"a"`` on mainnet and
  ``"b"`` on testnet.

User-signed actions (``approveAgent``) are EIP-712 messages in the domain
``HyperliquidSignTransaction`` whose chain id is the action's ``signatureChainId``, with the
action's own fields and ``hyperliquidChain`` (``"Mainnet"`` or ``"Testnet"``).

The signer is recovered from the signature (secp256k1 public-key recovery), never trusted from
the request: a tampered action or a wrong key recovers another address.
"""

from __future__ import annotations

from typing import Any

import msgpack
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak

__all__ = ["APPROVE_AGENT_TYPES", "recover_l1_signer", "recover_user_signer"]

_DOMAIN_TYPES = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
_ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

APPROVE_AGENT_TYPES = [
    {"name": "hyperliquidChain", "type": "string"},
    {"name": "agentAddress", "type": "address"},
    {"name": "agentName", "type": "string"},
    {"name": "nonce", "type": "uint64"},
]


def _action_hash(
    action: Any, vault_address: str | None, nonce: int, expires_after: int | None
) -> bytes:
    data = msgpack.packb(action)
    data += nonce.to_bytes(8, "big")
    if vault_address is None:
        data += b"\x00"
    else:
        data += b"\x01" + bytes.fromhex(vault_address.removeprefix("0x"))
    if expires_after is not None:
        data += b"\x00" + expires_after.to_bytes(8, "big")
    return bytes(keccak(data))


def _recover(typed: dict[str, Any], signature: dict[str, Any]) -> str:
    message = encode_typed_data(full_message=typed)
    vrs = (int(signature["v"]), _as_int(signature["r"]), _as_int(signature["s"]))
    return str(Account.recover_message(message, vrs=vrs)).lower()


def _as_int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def recover_l1_signer(
    action: Any,
    signature: dict[str, Any],
    *,
    nonce: int,
    vault_address: str | None,
    expires_after: int | None,
    mainnet: bool,
) -> str:
    """The address (lower case) that signed an L1 action as a phantom agent.

    Raises
    ------
    ValueError, KeyError, TypeError
        A malformed signature or vault address.
    """
    typed = {
        "domain": {
            "chainId": 1337,
            "name": "Exchange",
            "verifyingContract": _ZERO_ADDRESS,
            "version": "1",
        },
        "types": {
            "Agent": [
                {"name": "source", "type": "string"},
                {"name": "connectionId", "type": "bytes32"},
            ],
            "EIP712Domain": _DOMAIN_TYPES,
        },
        "primaryType": "Agent",
        "message": {
            "source": "a" if mainnet else "b",
            "connectionId": _action_hash(action, vault_address, nonce, expires_after),
        },
    }
    return _recover(typed, signature)


def recover_user_signer(
    action: dict[str, Any],
    signature: dict[str, Any],
    *,
    types: list[dict[str, str]],
    primary_type: str,
    mainnet: bool,
) -> str:
    """The address (lower case) that signed a user-signed action (EIP-712 over its fields).

    Raises
    ------
    ValueError, KeyError, TypeError
        A malformed signature or action.
    """
    # a field the client left out of the request was signed with its empty value (the SDK
    # signs approveAgent with agentName "" and then drops the field)
    message = {t["name"]: action.get(t["name"], "" if t["type"] == "string" else 0) for t in types}
    message["hyperliquidChain"] = "Mainnet" if mainnet else "Testnet"
    typed = {
        "domain": {
            "name": "HyperliquidSignTransaction",
            "version": "1",
            "chainId": int(str(action["signatureChainId"]), 16),
            "verifyingContract": _ZERO_ADDRESS,
        },
        "types": {primary_type: types, "EIP712Domain": _DOMAIN_TYPES},
        "primaryType": primary_type,
        "message": message,
    }
    return _recover(typed, signature)
