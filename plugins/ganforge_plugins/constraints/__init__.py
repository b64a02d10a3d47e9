"""First-party constraints (the ``constraint`` kind, used by the ``constrained`` objective)."""
