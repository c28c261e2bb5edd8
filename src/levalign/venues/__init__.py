"""Venues: where follower orders go.

=======================  ================================================================
:mod:`.hyperliquid`      Hyperliquid over the official ``hyperliquid-python-sdk``
=======================  ================================================================
"""
