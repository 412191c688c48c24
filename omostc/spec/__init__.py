"""The scene spec: the Scene model (``model``), shared render settings (``render``), Omost's tables
(``tables``), the JSON Schema (``schema``) and YAML in and out (``yamlio``)."""
