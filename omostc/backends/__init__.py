"""Backends turn the IR into images, behind one interface (``base``) and a registry (``registry``).
See ``backends/README.md`` for how to add one."""
