"""Venues: where follower orders go.

=======================  ==============================================================
:mod:`.base`             the :class:`~levalign.venues.base.Venue` protocol and its records
:mod:`.paper`            the paper venue: fills, fees, slippage, funding, liquidation
=======================  ==============================================================

Live exchange venues implement the same protocol.
"""
