"""The copier's engine: the decision shared with the backtest, and the live copier around it.

=======================  ==============================================================
:mod:`.decide`           one lead event (or a price) to every follower's order, pure
:mod:`.store`            the durable store: lead events, follower state, the order outbox
:mod:`.client_ids`       client order ids derived from (lead event, follower, leg)
:mod:`.dispatcher`       sends outbox orders, risk-reducing first, within rate limits
=======================  ==============================================================

Import the submodules; this package imports nothing heavy. See docs/design.md, "Live engine",
and docs/live.md.
"""
