"""Venues: where follower orders go.

=======================  ==============================================================
:mod:`.base`             ``OrderVenue`` (what the dispatcher sends through) and
                         ``Venue`` (an in-process venue with positions and balances)
:mod:`.paper`            the paper venue: fills, fees, slippage, funding, liquidation
:mod:`.hyperliquid`      Hyperliquid's ``/exchange`` through the official SDK
=======================  ==============================================================
"""
