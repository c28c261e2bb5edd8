"""The copier's engine: the decision shared with the backtest, and the live copier around it.

=======================  ==============================================================
:mod:`.decide`           one lead event (or a price) to every follower's order, pure
=======================  ==============================================================

The live copier (store, outbox, dispatcher, guards, reconciliation) sits here too; see
docs/design.md, "Live engine".
"""
