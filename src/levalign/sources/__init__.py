"""Lead sources: where lead events come from.

=======================  ================================================================
:mod:`.base`             the ``LeadSource`` protocol, state, event, gap and cursor stores
:mod:`.replay`           lead-history files: format, loading, and a source over them
:mod:`.hyperliquid`      a Hyperliquid wallet: websocket ``userFills`` + REST backfill
=======================  ================================================================
"""
