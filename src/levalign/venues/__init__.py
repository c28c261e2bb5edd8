"""Venues: where follower orders go.

=======================  ================================================================
:mod:`.base`             the ``OrderVenue`` protocol: submit an order, look it up by client id
:mod:`.paper`            the paper venue: fills, fees, slippage, funding, liquidation
:mod:`.hyperliquid`      Hyperliquid's ``/exchange`` and ``/info`` through the official SDK
=======================  ================================================================
"""
