"""Which seeds a spec renders, and how its images get their noise (README "Seeds and images").

* The seeds listed: ``--seed`` (repeatable) if given, else the spec's ``render.seed``, else the
  profile's ``seeds:`` list, else 12345. Only the first source that has seeds is used.
* Images per spec: ``--images N`` if given, else the profile's ``images``, else 1. The listed
  seeds come first, then seeds counting up from the last listed one make up N images:
  ``--seed 5 --images 3`` renders 5, 6, 7; a profile's ``seeds: [12345]`` with ``--images 3``
  renders 12345, 12346, 12347; ``--seed 5 --seed 100 --images 3`` renders 5, 100, 101. A listed
  seed is never dropped: more seeds than ``--images`` renders them all (with a warning).
* A seed listed twice (``--seed 5 --seed 5``) is rendered once, with a warning.
* ``batch_seeds: omost`` (``--batch-seeds omost``): the N images are one of Omost's batches,
  drawn from one generator seeded with the first seed S; image k is saved as ``S+k.png``.
  Further listed seeds are not used (a warning says so).
"""

from __future__ import annotations

from omostc.backends.base import Noise, Seed
from omostc.spec.render import DEFAULT_SEED, MAX_IMAGES, MAX_SEED


def starting_seeds(given: list[int] | None, spec_seed: int | None, profile_seeds: list[int] | None) -> list[int]:
    if given:
        return list(given)
    if spec_seed is not None:
        return [spec_seed]
    return list(profile_seeds) if profile_seeds else [DEFAULT_SEED]


def plan_seeds(listed: list[int], images: int, mode: str, *,
               images_given: bool = False) -> tuple[list[Seed], list[str], list[str]]:
    """(the seeds in order, warnings, problems): ``images`` in all, ``listed`` first.
    ``images_given``: ``images`` came from the command line (a smaller count than the seeds
    listed is then worth a warning)."""
    warnings: list[str] = []
    unique = list(dict.fromkeys(listed))
    if len(unique) < len(listed):
        twice = sorted({s for s in listed if listed.count(s) > 1})
        warnings.append(f"seed {', '.join(map(str, twice))} is listed more than once; it is rendered once")
    if mode == "omost":
        if len(unique) > 1:
            warnings.append(f"with batch seeds 'omost' the {images} images are one batch from the first seed "
                            f"({unique[0]}); the other seeds listed ({', '.join(map(str, unique[1:]))}) are not used")
        unique = unique[:1]
    elif images_given and len(unique) > images:
        warnings.append(f"--images {images} is fewer than the {len(unique)} seeds listed: all of them are rendered")
    count = images if mode == "omost" else max(images, len(unique))
    if count > MAX_IMAGES:
        return [], warnings, [f"{count} images of one spec; at most {MAX_IMAGES} are allowed"]
    seeds = list(unique)
    taken = set(seeds)
    next_seed = seeds[-1] + 1
    while len(seeds) < count:
        if next_seed > MAX_SEED:
            return [], warnings, [f"seeds counting up from {unique[-1]} pass the largest seed ({MAX_SEED})"]
        if next_seed not in taken:
            seeds.append(next_seed)
            taken.add(next_seed)
        next_seed += 1
    if mode == "omost" and count > 1:
        return [Noise(seeds[0], k, count) for k in range(count)], warnings, []
    return list(seeds), warnings, []
