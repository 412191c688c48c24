"""Helpers every torch backend shares: devices and dtypes, the cache folder, samplers, logging."""
