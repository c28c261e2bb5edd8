"""Lead sources: where a lead trader's events come from.

=======================  ================================================================
:mod:`.base`             the live ``LeadSource`` protocol (state, event, gap, cursor
                         stores) and the ``HistorySource`` protocol of finite histories
:mod:`.replay`           lead-history files: format, loading, and a source over them
:mod:`.hyperliquid`      a Hyperliquid wallet: websocket ``userFills`` + REST backfill
=======================  ================================================================
"""
