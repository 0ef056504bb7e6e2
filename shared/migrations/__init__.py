"""Ordered SQL migrations, applied at start-up by ``shared.database``."""
