"""Small helpers shared by the tests."""

from __future__ import annotations

import textwrap

from omostc import CompileError, compile_canvas

GLOBAL = """canvas.set_global_description(
    description='A cat on a table.',
    detailed_descriptions=['A cat sits.', 'The room is warm.'],
    tags='cat, table',
    HTML_web_color_name='wheat',
)
"""

REGION = """canvas.add_local_description(
    location='in the center',
    offset='no offset',
    area='a small square area',
    distance_to_viewer=2.0,
    description='A cat.',
    detailed_descriptions=['A tabby cat.'],
    tags='cat',
    atmosphere='Calm.',
    style='Photo.',
    quality_meta='Sharp.',
    HTML_web_color_name='orange',
)
"""


def program(*calls: str, head: str = "canvas = Canvas()\n") -> str:
    return head + "".join(textwrap.dedent(c) for c in calls)


def errors_of(text: str, **kw) -> list:
    try:
        compile_canvas(text, **kw)
    except CompileError as exc:
        return exc.errors
    raise AssertionError("expected a CompileError")


def one_error(text: str, **kw):
    errs = errors_of(text, **kw)
    assert len(errs) >= 1
    return errs[0]
