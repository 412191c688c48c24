"""FLUX regional joint attention (omostc/backends/flux/attention.py): the fused path equals the
literal definition, the mask says what it should, the schedule, and installing the processors
changes nothing outside the regional steps. A tiny random FluxTransformer2DModel keeps it fast."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import REPO

from omostc import load_scene
from omostc.backends.flux import fused
from omostc.backends.flux.attention import RegionalAttention, RegionalAttentionOptions, token_masks
from omostc.backends.flux.fused import FusedPlan, attention_lse, fused_attention, region_text_chunked
from omostc.backends.flux.masks import token_grid
from omostc.backends.flux.reference import joint_mask, reference_attention
from omostc.ir.lowering import lower
from omostc.ir.masks import box_mask
from omostc.ir.model import Layer

SPECS = sorted((REPO / "specs").glob("*.yaml"))
SCALE = 0.25


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def random_masks(layers: int, n: int, generator: torch.Generator) -> torch.Tensor:
    masks = torch.rand(layers, n, generator=generator) < torch.rand(layers, 1, generator=generator)
    masks[0] = True
    masks[torch.arange(layers), torch.randint(n, (layers,), generator=generator)] = True  # each region: one token
    return masks


def spec_layers(path) -> list[Layer]:
    scene, _ = load_scene(path)
    return lower(scene).layers


def plan_of(lengths, masks, options) -> FusedPlan:
    cap = options.area_scale_max if options.area_scaling else None
    return FusedPlan.build(lengths, masks, "cpu", torch.float32, cap)


def both(q, k, v, lengths, masks, options, injected=True, split=True):
    """(fused, reference) on (B, H, S, D) tensors in the stream's order."""
    plan = plan_of(lengths, masks, options)
    qf, kf, vf = (plan.to_fused(x.transpose(1, 2)) for x in (q, k, v))
    parts = fused_attention(qf, kf, vf, plan, SCALE, injected=injected, base_ratio=options.base_ratio, split=split)
    return (plan.to_stream(*parts).transpose(1, 2),
            reference_attention(q, k, v, lengths, masks, options, SCALE, injected=injected))


OPTIONS = [RegionalAttentionOptions(), RegionalAttentionOptions(base_ratio=0.0),
           RegionalAttentionOptions(base_ratio=1.0), RegionalAttentionOptions(area_scaling=True, area_scale_max=3.0)]


@pytest.fixture(params=["default", "grouped", "dense", "masked"])
def path(request, monkeypatch):
    """Which fused sub-path runs: the plan's own choice; coverage groups (up to 64) and region texts
    one by one; one masked attention for each; or the masked fallback without log-sum-exp kernels."""
    limit = {"grouped": 64, "dense": 0}.get(request.param)
    if limit is not None:
        monkeypatch.setattr(fused, "MAX_GROUPS", limit)
        monkeypatch.setattr(fused, "MAX_GATHERED_REGIONS", limit)
        monkeypatch.setattr(fused, "GATHER_SAVING", math.inf if limit else 0.0)
    return request.param


def test_the_forced_paths_take_effect(path):
    masks = token_masks(spec_layers(REPO / "specs" / "dragon.yaml"), 160, 160)
    plan = plan_of([5, 4, 6, 3, 7], masks, RegionalAttentionOptions())
    grouped = path != "dense"  # "masked" keeps the plan's choice; the log-sum-exp split is off
    assert (plan.groups is not None, plan.region_pixels is not None) == (grouped, grouped)


@pytest.mark.parametrize("regions,rows,cols", [(1, 7, 9), (2, 5, 13), (5, 11, 3), (17, 9, 7), (40, 13, 11)])
def test_fused_equals_reference_on_random_inputs(regions, rows, cols, path):
    split = path != "masked"
    g = torch.Generator().manual_seed(regions * 100 + rows)
    lengths = torch.randint(1, 7, (regions + 1,), generator=g).tolist()
    masks = random_masks(regions + 1, rows * cols, g)
    s = sum(lengths) + rows * cols
    for options in OPTIONS if path == "default" else OPTIONS[:1] + OPTIONS[3:]:
        for injected in (True, False) if path == "default" else (True,):
            q, k, v = (torch.randn(2, 3, s, 16, generator=g) for _ in range(3))
            fused, ref = both(q, k, v, lengths, masks, options, injected, split)
            assert rel_error(fused, ref) < 1e-5, (options, injected)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_fused_equals_reference_on_spec_masks(spec, path):
    layers = spec_layers(spec)
    masks = token_masks(layers, 208, 336)  # 13 x 21 tokens
    g = torch.Generator().manual_seed(len(layers))
    lengths = torch.randint(2, 9, (len(layers),), generator=g).tolist()
    s = sum(lengths) + masks.shape[1]
    for options in OPTIONS[:2] + OPTIONS[3:] if path == "default" else OPTIONS[:1]:
        q, k, v = (torch.randn(1, 2, s, 32, generator=g) for _ in range(3))
        out, ref = both(q, k, v, lengths, masks, options, split=path != "masked")
        assert rel_error(out, ref) < 1e-5


def probabilities(lengths, masks, options, fused=True):
    """The attention probabilities (B, H, S, S): values are the identity, so the output is P."""
    s = sum(lengths) + masks.shape[1]
    g = torch.Generator().manual_seed(3)
    q, k = (torch.randn(1, 2, s, s, generator=g) / 4 for _ in range(2))
    v = torch.eye(s).expand(1, 2, s, s)
    out, ref = both(q, k, v, lengths, masks, options)
    return out if fused else ref


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("path", [p for p in SPECS if p.stem in ("dragon", "tides-bbox")], ids=lambda p: p.stem)
def test_masked_pairs_get_zero_probability(path, fused):
    layers = spec_layers(path)
    masks = token_masks(layers, 96, 128)  # 6 x 8 tokens: small boxes keep their one token
    lengths = [3 + i % 3 for i in range(len(layers))]
    tg, t = lengths[0], sum(lengths)
    starts = np.cumsum([0] + lengths)
    for options in (RegionalAttentionOptions(), RegionalAttentionOptions(area_scaling=True)):
        p = probabilities(lengths, masks, options, fused)[0]
        assert torch.allclose(p.sum(-1), torch.ones(()), atol=1e-5)
        for i in range(1, len(layers)):
            own = slice(starts[i], starts[i + 1])
            outside = t + torch.nonzero(~masks[i]).flatten()
            inside = t + torch.nonzero(masks[i]).flatten()
            assert torch.all(p[:, outside][:, :, own] == 0), "image outside a box sees its region's text"
            assert torch.all(p[:, own][:, :, outside] == 0), "a region's text sees image outside its box"
            assert torch.all(p[:, inside][:, :, own] > 0)
            for j in range(len(layers)):
                if j != i:  # region texts see neither each other nor the global text
                    assert torch.all(p[:, own, starts[j]:starts[j + 1]] == 0)
                    assert torch.all(p[:, starts[j]:starts[j + 1], own] == 0)
        assert torch.all(p[:, t:, :tg] > 0) and torch.all(p[:, t:, t:] > 0)  # global text, image: open


def test_joint_mask_is_the_definition():
    masks = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 1], [0, 0, 1, 1]], dtype=torch.bool)
    m = joint_mask([1, 2, 1], masks).int()
    assert m.tolist() == [
        [1, 0, 0, 0, 1, 1, 1, 1],
        [0, 1, 1, 0, 1, 0, 0, 1],
        [0, 1, 1, 0, 1, 0, 0, 1],
        [0, 0, 0, 1, 0, 0, 1, 1],
        [1, 1, 1, 0, 1, 1, 1, 1],
        [1, 0, 0, 0, 1, 1, 1, 1],
        [1, 0, 0, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 1, 1],
    ]


def test_chunked_region_part_equals_the_cpu_kernel():
    """The path for devices without a masked log-sum-exp kernel (CUDA), checked on the CPU."""
    g = torch.Generator().manual_seed(5)
    masks = random_masks(4, 50, g)
    masks[1:, :7] = False  # image tokens in no region: lse -inf, output 0
    plan = plan_of([3, 2, 4, 3], masks, RegionalAttentionOptions())
    q = torch.randn(2, 3, 50, 16, generator=g)
    k, v = (torch.randn(2, 3, 9, 16, generator=g) for _ in range(2))
    out, lse = attention_lse(q, k, v, SCALE, plan.image_bias)
    chunked, chunked_lse = region_text_chunked(q, k, v, plan.image_bias, SCALE, chunk_elements=300)
    assert torch.allclose(chunked, out, atol=1e-6)
    covered = masks[1:].any(dim=0)
    assert not covered[:7].any() and covered.any()
    covered = covered[plan.image_order]  # the plan's rows are in the fused order
    assert torch.equal(torch.isinf(chunked_lse), ~covered.expand_as(lse))
    assert torch.allclose(chunked_lse[:, :, covered], lse[:, :, covered], atol=1e-5)
    assert torch.all(chunked[:, :, ~covered] == 0) and torch.all(out[:, :, ~covered] == 0)


def test_a_disagreeing_kernel_falls_back_to_the_masked_path():
    """Off the CPU the first call is checked against the masked path (kernels the tests cannot run)."""
    g = torch.Generator().manual_seed(6)
    lengths, masks = [3, 2, 4], random_masks(3, 30, g)
    plan = plan_of(lengths, masks, RegionalAttentionOptions())
    q, k, v = (torch.randn(1, 2, 39, 16, generator=g) for _ in range(3))
    _, _, image = fused_attention(q, k, v, plan, SCALE, injected=True, base_ratio=0.3)
    fused._check(q, k, v, plan, SCALE, 0.3, image)
    assert plan.split and plan.checked
    with pytest.warns(RuntimeWarning, match="disagree"):
        fused._check(q, k, v, plan, SCALE, 0.3, image + 1)
    assert not plan.split


# --- token masks --------------------------------------------------------------------------


def region(box, index=1) -> Layer:
    return Layer(kind="region", box=box, color=(0, 0, 0), prefixes=["a"], suffixes=[], region_index=index)


def test_token_masks_on_the_packed_grid():
    layers = [Layer(kind="global", box=(0, 90, 0, 90), color=(0, 0, 0), prefixes=["g"], suffixes=[]),
              region((0, 45, 0, 90)), region((30, 90, 40, 90)), region((44, 46, 44, 46))]
    masks = token_masks(layers, 1024, 768)
    assert masks.shape == (4, 64 * 48) and masks.dtype == torch.bool
    assert masks[0].all()
    grid = masks.reshape(4, 64, 48)
    assert torch.equal(grid[1], torch.from_numpy(box_mask((0, 45, 0, 90), 64, 48)))
    assert (grid[1] & grid[2]).any()  # overlapping regions keep both masks, as in Omost
    tiny = token_masks(layers, 64, 48)  # 4 x 3 tokens: the 2-cell box covers no token's centre
    assert tiny[3].sum() == 1 and tiny.reshape(4, 4, 3)[3, 2, 1]  # the token under its centre
    assert tiny[1:].any(dim=1).all()
    assert token_grid(1024, 768) == (64, 48)
    with pytest.raises(ValueError, match="multiples of 16"):
        token_masks(layers, 1000, 768)


# --- the schedule -------------------------------------------------------------------------


def test_regional_steps_follow_the_reference():
    o = RegionalAttentionOptions()
    assert [o.regional_step_count(n) for n in (24, 28, 4, 1)] == [10, 12, 2, 1]
    assert RegionalAttentionOptions(mask_steps=10).regional_step_count(4) == 4
    assert RegionalAttentionOptions(regional_steps=0.0).regional_step_count(24) == 0
    ra = RegionalAttention([3, 2], torch.ones(2, 6, dtype=torch.bool))
    assert [ra.use_regions(i, 24) for i in (0, 9, 10, 23)] == [True, True, False, False]
    assert not RegionalAttention([3], torch.ones(1, 6, dtype=torch.bool)).use_regions(0, 24)  # global only
    ra = RegionalAttention([3, 2], torch.ones(2, 6, dtype=torch.bool),
                           RegionalAttentionOptions(double_interval=2, single_interval=3))
    assert [ra.injected("transformer_blocks", i) for i in range(4)] == [True, False, True, False]
    assert [ra.injected("single_transformer_blocks", i) for i in range(4)] == [True, False, False, True]
    for bad in (dict(regional_steps=1.5), dict(double_interval=0), dict(base_ratio=-0.1), dict(area_scale_max=0.5),
                dict(mask_steps=-1)):
        with pytest.raises(ValueError):
            RegionalAttentionOptions(**bad)


# --- in a transformer ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def transformer():
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    model = FluxTransformer2DModel(patch_size=1, in_channels=8, num_layers=3, num_single_layers=3,
                                   attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                   pooled_projection_dim=16, axes_dims_rope=(4, 6, 6))
    return model.eval()


def run(model, text: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(1, rows * cols, 8, generator=g)
    ids = torch.zeros(rows, cols, 3)
    ids[..., 1] = torch.arange(rows)[:, None]
    ids[..., 2] = torch.arange(cols)[None, :]
    with torch.no_grad():
        return model(hidden_states=latents, encoder_hidden_states=text, pooled_projections=torch.ones(1, 16),
                     timestep=torch.tensor([0.7]), img_ids=ids.reshape(-1, 3), txt_ids=torch.zeros(text.shape[1], 3),
                     return_dict=False)[0]


def scene(rows=13, cols=11, path=REPO / "specs" / "dragon.yaml"):
    masks = token_masks(spec_layers(path), rows * 16, cols * 16)
    lengths = [5, 4, 6, 3, 7][:masks.shape[0]]
    text = torch.randn(1, sum(lengths), 32, generator=torch.Generator().manual_seed(2))
    return lengths, masks, text


@pytest.mark.parametrize("options", [RegionalAttentionOptions(), RegionalAttentionOptions(area_scaling=True),
                                     RegionalAttentionOptions(double_interval=2, single_interval=2, base_ratio=0.1)],
                         ids=["default", "area", "intervals"])
def test_transformer_fused_equals_reference(transformer, options):
    lengths, masks, text = scene()
    outs = []
    for reference in (False, True):
        ra = RegionalAttention(lengths, masks, options, reference=reference)
        with ra.installed(transformer):
            assert ra.set_step(0, 24)
            outs.append(run(transformer, text, 13, 11))
    assert rel_error(outs[0], outs[1]) < 1e-5


def test_processors_restored_bit_identical(transformer):
    lengths, masks, text = scene()
    before = dict(transformer.attn_processors)
    plain = run(transformer, text[:, :lengths[0]], 13, 11)
    ra = RegionalAttention(lengths, masks)
    with ra.installed(transformer):
        assert all(type(p).__name__ == "RegionalFluxAttnProcessor" for p in transformer.attn_processors.values())
        ra.set_step(0, 24)
        regional = run(transformer, text, 13, 11)
    assert not torch.allclose(regional, plain, atol=1e-3)
    after = transformer.attn_processors
    assert all(after[name] is proc for name, proc in before.items())
    assert torch.equal(run(transformer, text[:, :lengths[0]], 13, 11), plain)


def test_after_the_regional_steps_it_is_diffusers_exactly(transformer):
    lengths, masks, text = scene()
    plain = run(transformer, text[:, :lengths[0]], 13, 11)
    ra = RegionalAttention(lengths, masks)
    with ra.installed(transformer):
        assert not ra.set_step(10, 24)
        assert torch.equal(run(transformer, text[:, :lengths[0]], 13, 11), plain)
        with pytest.raises(ValueError, match="expects 5 .the global layer"):
            run(transformer, text, 13, 11)  # all layers' tokens in a plain step: a loop bug, said so
        ra.set_step(0, 24)
        with pytest.raises(ValueError, match="expects 25 .all layers"):
            run(transformer, text[:, :lengths[0]], 13, 11)


def test_base_ratio_one_is_plain_flux(transformer):
    """With the base pass alone the image and global text see exactly what plain FLUX's do: this
    checks the fused path's projections, norms and rotary embedding against diffusers'."""
    lengths, masks, text = scene(9, 15, REPO / "specs" / "tides-bbox.yaml")
    plain = run(transformer, text[:, :lengths[0]], 9, 15)
    for split in (True, False):
        ra = RegionalAttention(lengths, masks, RegionalAttentionOptions(base_ratio=1.0), split_softmax=split)
        with ra.installed(transformer):
            ra.set_step(0, 24)
            assert rel_error(run(transformer, text, 9, 15), plain) < 1e-5


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="layers"):
        RegionalAttention([3, 2], torch.ones(3, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one text token"):
        RegionalAttention([3, 0], torch.ones(2, 6, dtype=torch.bool))
    assert math.isclose(RegionalAttentionOptions().regional_steps * 24, 10)
