"""The one interface every rendering backend implements, and what the registry knows of each.

A backend turns a scene into its IR (``lower``: the neutral IR plus whatever text encoding its
models need) and renders that IR with the shared ``RenderOptions`` and seeds into images. Its
own settings (dtype, VAE, sampler, ...) are a settings dataclass named in its registry entry;
the JSON Schemas, the profile loader and the command-line flags are derived from it, so core
code never names a backend or one of its options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from omostc.spec.render import HighResFix, RenderOptions, resolve_options

if TYPE_CHECKING:
    from PIL import Image

    from omostc.ir.model import SceneIR
    from omostc.spec.model import Scene

__all__ = ["Backend", "BackendEntry", "HighResFix", "Noise", "Progress", "RenderOptions", "Seed", "image_seed",
           "resolve_options"]

Progress = Callable[[int, int], None]  # (denoising step, steps)


@dataclass(frozen=True)
class Noise:
    """Where an image's noise comes from with Omost's batch semantics (``batch_seeds: omost``):
    Omost's app draws the noise of all ``batch`` images of a prompt from one generator seeded
    with ``seed``, at once (``randn((batch, ...))``, and again for the hi-res pass); this is
    image ``index`` of them, rendered alone. Its file and recorded seed is ``seed + index``."""

    seed: int
    index: int
    batch: int

    @property
    def image_seed(self) -> int:
        return self.seed + self.index


Seed = int | Noise  # a plain seed: the image's own generator, its batch of one


def image_seed(seed: Seed) -> int:
    """The seed an image is named and recorded by."""
    return seed.image_seed if isinstance(seed, Noise) else int(seed)


class Backend(Protocol):
    name: str

    def lower(self, scene: Scene) -> SceneIR:
        """The IR this backend renders: the neutral IR plus the text encoding its models need."""
        ...

    def render(self, ir: SceneIR, options: RenderOptions, seeds: list[Seed],
               progress: Progress | None = None) -> list[Image.Image]:
        """One image per seed; ``progress(step, steps)`` is called as denoising advances. A seed
        is an int (the image's own generator) or a ``Noise`` (image k of a batch drawn from one
        generator, Omost's way); a backend whose pictures have no noise takes both alike."""
        ...

    def parameters(self, options: RenderOptions) -> list[str]:
        """A1111-style ``Key: value`` fields saying what this backend did (shown by image tools)."""
        ...


@dataclass(frozen=True)
class BackendEntry:
    """What the registry holds for one backend; nothing here imports a model library."""

    name: str
    summary: str
    options: type  # a settings dataclass (``omostc.settings.setting`` fields) of the backend's own options
    create: Callable[[str | None, Any, int | None], Backend]  # (model, options, threads) -> a loaded backend
    needs_model: bool = True
    model_help: str = ""
    validate: Callable[[Any], list[str]] = field(default=lambda options: [])  # problems found before loading
    dev_commands: Callable[[], list[Any]] | None = None  # click commands this backend adds to `omostc dev`
    # the options with every default that depends on this machine (a dtype chosen by the device)
    # made explicit, so a PNG records, and its key covers, what actually rendered it
    resolve: Callable[[Any], Any] = field(default=lambda options: options)
    render_version: int = 1  # raised when this backend's pixels change for the same inputs (part of the key)
