"""The fused regional attention computes Omost's formula, and regions see only their boxes."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is a dev dependency")
pytest.importorskip("diffusers", reason="diffusers is a dev dependency")

from conftest import REPO  # noqa: E402
from diffusers.models.attention_processor import Attention  # noqa: E402
from helpers import GLOBAL, REGION, program  # noqa: E402

from omostc import compile_canvas, load_spec, lower  # noqa: E402
from omostc.backends.sdxl import attention  # noqa: E402
from omostc.backends.sdxl.attention import RegionalAttention, RegionPlan, latent_resolutions, padded  # noqa: E402
from omostc.ir.clip.tokenize import default_tokenizer  # noqa: E402


class OneLayerUNet(torch.nn.Module):
    """Just enough of a UNet for RegionalAttention to install processors on one attention."""

    def __init__(self, attn):
        super().__init__()
        self.attn = attn

    @property
    def attn_processors(self):
        return {"block.attn2.processor": self.attn.processor}

    def set_attn_processor(self, procs):
        self.attn.set_processor(procs["block.attn2.processor"])


def random_ir(n_regions: int, seed: int, soft: bool = False):
    rng = np.random.default_rng(seed)
    regions = []
    for _ in range(n_regions):
        x, y = rng.integers(0, 85, 2)
        w, h = rng.integers(1, 91 - x), rng.integers(1, 91 - y)
        extra = f" feather={rng.uniform(0, 8):.2f}, weight={rng.uniform(0.5, 2):.2f}," if soft else ""
        regions.append(
            REGION.replace("location='in the center',\n    offset='no offset',\n    area='a small square area',",
                           f"bbox=[{x}, {y}, {w}, {h}],")
            .replace("distance_to_viewer=2.0", f"distance_to_viewer={rng.uniform(0.5, 9):.3f}")
            .replace("HTML_web_color_name='orange',", "HTML_web_color_name='orange'," + extra))
    return lower(compile_canvas(program(GLOBAL, *regions)).scene, default_tokenizer())


def run(ir, hidden_size: int, latent: tuple[int, int], level: tuple[int, int], images: int, kind: str, seed: int = 0,
        attn=None, cond=None):
    torch.manual_seed(seed)
    attn = attn or Attention(query_dim=hidden_size, cross_attention_dim=48, heads=4, dim_head=hidden_size // 4)
    counts = [77 * len(layer.bags) for layer in ir.text.layers]
    t = sum(counts)
    if cond is None:
        cond = torch.zeros(2 * images, padded(max(t, 77)), 48)
        cond[:images, :77] = torch.randn(77, 48)
        cond[images:, :t] = torch.randn(t, 48)
    hidden = torch.randn(2 * images, level[0] * level[1], hidden_size)
    control = RegionalAttention(OneLayerUNet(attn), kind)
    with control.active(RegionPlan.build(ir, counts, *latent, images)):
        return attn(hidden, encoder_hidden_states=cond)


def relative_error(a, b) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("grouped", [True, False], ids=["pixel-groups", "dense-mask"])
@pytest.mark.parametrize("n_regions", [1, 2, 5, 13, 40])
@pytest.mark.parametrize("latent, level", [((13, 17), (13, 17)), ((13, 17), (7, 9)), ((64, 64), (32, 32)),
                                           ((9, 11), (3, 3)), ((144, 112), (36, 28))])
def test_fast_equals_reference_on_random_inputs(n_regions, latent, level, grouped, monkeypatch):
    monkeypatch.setattr(attention, "MAX_GROUPS", 10_000 if grouped else 0)
    monkeypatch.setattr(attention, "MIN_SAVING", -1.0 if grouped else 2.0)
    monkeypatch.setattr(attention, "MAX_GATHERED", 1e9)
    ir = random_ir(n_regions, seed=n_regions + level[0])
    fast = run(ir, 32, latent, level, 2, "fast")
    reference = run(ir, 32, latent, level, 2, "reference")
    assert relative_error(fast, reference) < 1e-5


@pytest.mark.parametrize("n_regions", [1, 5, 40])
def test_fast_equals_reference_with_soft_edges_and_weights(n_regions):
    ir = random_ir(n_regions, seed=7 * n_regions, soft=True)
    for level in [(13, 17), (7, 9)]:
        fast = run(ir, 32, (13, 17), level, 1, "fast")
        assert relative_error(fast, run(ir, 32, (13, 17), level, 1, "reference")) < 1e-5


@pytest.mark.parametrize("spec", sorted((REPO / "specs").glob("*.yaml")), ids=lambda p: p.stem)
def test_fast_equals_reference_on_real_masks(spec):
    ir = lower(load_spec(spec), default_tokenizer())
    for level in [(16, 16), (8, 8), (18, 14)]:
        latent = {(16, 16): (32, 32), (8, 8): (32, 32), (18, 14): (36, 28)}[level]
        assert relative_error(run(ir, 32, latent, level, 1, "fast"), run(ir, 32, latent, level, 1, "reference")) < 1e-5


def test_attention_to_a_region_is_zero_outside_its_box():
    """Values are 1 on one region's tokens and 0 elsewhere, so the output at a pixel is the
    attention mass that pixel gives that region."""
    dim = 16
    ir = random_ir(3, seed=3)
    attn = Attention(query_dim=dim, cross_attention_dim=dim, heads=1, dim_head=dim)
    with torch.no_grad():
        attn.to_v.weight.copy_(torch.eye(dim))
        attn.to_out[0].weight.copy_(torch.eye(dim))
        attn.to_out[0].bias.zero_()
    counts = [77 * len(layer.bags) for layer in ir.text.layers]
    t, images = sum(counts), 1
    for target in range(1, len(ir.layers)):
        start = sum(counts[:target])
        cond = torch.zeros(2, padded(t), dim)
        cond[:, :, 1:] = torch.randn(2, padded(t), dim - 1)
        cond[1, start:start + counts[target], 0] = 1.0
        for latent in [(13, 17), (32, 32)]:
            out = run(ir, dim, latent, latent, images, "fast", attn=attn, cond=cond)
            mass = out[1, :, 0].reshape(latent).detach().numpy()
            inside = ir.layers[target].mask(*latent)
            assert np.all(mass[~inside] == 0.0)
            assert np.all(mass[inside] > 0.0)


def test_zero_area_region_is_harmless():
    ir = random_ir(2, seed=1)
    ir.layers[1].box = (10, 10, 5, 40)  # empty box
    out = run(ir, 32, (13, 17), (13, 17), 1, "fast")
    assert torch.isfinite(out).all()
    assert relative_error(out, run(ir, 32, (13, 17), (13, 17), 1, "reference")) < 1e-5


def test_latent_resolutions_round_up_like_stride_2_convolutions():
    assert latent_resolutions(144, 112) == {144 * 112: (144, 112), 72 * 56: (72, 56), 36 * 28: (36, 28),
                                            18 * 14: (18, 14), 9 * 7: (9, 7)}
    assert (7 * 9) in latent_resolutions(13, 17)
