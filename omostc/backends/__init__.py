"""Renderers that execute the IR. Each backend implements ``omostc.backends.base.Backend``."""
