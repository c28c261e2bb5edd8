"""The live copier: the durable store and outbox, the order dispatcher (import submodules)."""
