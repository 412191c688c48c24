"""``omostc serve``: a local web app over a folder of specs, where the LLM conversation, the
layout and the YAML are three views of one scene. The last stage: it uses only the public API
(``omostc.api``, ``omostc.batch.api``, ``omostc.llm``) and the spec's tables; the page is static
HTML, CSS and JS in ``static/`` (no build step); ``API.md`` is the contract between them.
Needs the ``serve`` extra (Starlette and uvicorn)."""
