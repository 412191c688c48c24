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


_RENDERS: dict = {}


def render_pixels(out, model, *flags: str, specs=(), seed: int = 7):
    """Images rendered by the command users run (``omostc render SPEC... -p tiny --model MODEL``,
    64 x 64, 2 steps unless ``flags`` say otherwise), as int16 pixels: one array, or a list of one
    per spec when ``specs`` (default: specs/mountain-cabin.yaml) are given.

    An image is a function of the model folder, its spec, the seed and the flags alone (not of the
    other specs in the batch), so the same render asked again, by any test of the session, reuses
    the first one's pixels."""
    from pathlib import Path

    import numpy as np
    from click.testing import CliRunner
    from PIL import Image

    from omostc.cli import main

    paths = [str(s) for s in specs] or [str(Path(__file__).resolve().parents[1] / "specs" / "mountain-cabin.yaml")]
    keys = [(str(model), spec, seed, flags) for spec in paths]
    if not all(key in _RENDERS for key in keys):
        args = ["render", *paths, "-p", "tiny", "--model", str(model), "-o", str(out), "--seed", str(seed),
                "--width", "64", "--height", "64", "--steps", "2", "-q", *flags]
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
        images = []
        for spec in paths:
            with Image.open(Path(out) / Path(spec).stem / f"{seed}.png") as image:
                images.append(np.asarray(image.convert("RGB")).astype(np.int16))
        _RENDERS.update(zip(keys, images))
    images = [_RENDERS[key] for key in keys]
    return images if specs else images[0]


def assert_differ(a, b, at_least: float = 0.05) -> None:
    """Not the same picture: the same shape, and at least ``at_least`` of the values changed."""
    import numpy as np

    assert a.shape == b.shape
    changed = int(np.count_nonzero(a != b))
    assert changed >= at_least * a.size, f"only {changed} of {a.size} pixel values differ"
