"""Lead sources: where a lead trader's events come from.

=======================  ==============================================================
:mod:`.base`             the :class:`~levalign.sources.base.LeadSource` protocol, cursors
:mod:`.replay`           lead-history files: format, loading, and a source over them
=======================  ==============================================================

Live sources (a venue's fill stream with backfill) implement the same protocol.
"""
