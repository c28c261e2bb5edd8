"""The HTTP API over the same request and result schemas as the command line (to come)."""
