"""The copier's engine: the decision shared with the backtest, and the live copier around it.

=======================  ==============================================================
:mod:`.decide`           one lead event (or a price) to every follower's order, pure
:mod:`.store`            the durable store (SQLAlchemy 2, Alembic migrations)
:mod:`.outbox`           lead event, order intents and cursor in one transaction
:mod:`.client_ids`       client order ids derived from (lead event, follower, leg)
:mod:`.dispatcher`       sends the outbox's orders through a venue, resolves unknowns
=======================  ==============================================================

Import the submodules; see docs/design.md, "Live engine".
"""
