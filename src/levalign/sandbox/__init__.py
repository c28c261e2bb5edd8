"""Local servers that speak an exchange's public API, for trying configs and for tests.

=======================  ================================================================
:mod:`.hyperliquid`      a local Hyperliquid: REST ``/info``, ``/exchange``, websocket ``/ws``
=======================  ================================================================
"""
