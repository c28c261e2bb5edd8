"""Venues: where follower orders go (the order protocol in :mod:`levalign.venues.base`)."""
