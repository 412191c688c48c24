"""Offline random-weight models for tests (each backend adds its own through the registry)."""
