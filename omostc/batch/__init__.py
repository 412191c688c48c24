"""The batch runner: profiles, items, executors (local, Ray), PNG provenance, ``render_batch``."""
