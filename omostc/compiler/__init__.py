"""The compiler: LLM answer -> Canvas program -> Scene (``source``, ``parse``, ``calls``), Scene -> Canvas
code (``decompile``), and the grammar of Canvas programs (``grammar``)."""
