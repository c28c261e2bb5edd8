"""Bundled market data; see PROVENANCE.md."""
