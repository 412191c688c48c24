"""The FLUX.1 backend (issue 15): the offline tiny-flux model, loading, T5-per-layer lowering,
omostc's own flow-matching loop against diffusers' FluxPipeline, every spec rendered on the tiny
model through the command users run, determinism, --from-png, and the settings' checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO, dev_model
from PIL import Image

from omostc.cli import main

pytest.importorskip("diffusers", reason="diffusers is a dev dependency")

import torch  # noqa: E402 - after the importorskip above, as in the other model tests

SPECS = sorted((REPO / "specs").glob("*.yaml"))
GLOBAL_ONLY = """version: 1
global:
  description: A cat on a table in a warm room
  detailed_descriptions: [A black cat sits on a wooden table., Soft daylight comes from a window.]
  tags: cat, table, room, daylight
  color: wheat
regions: []
"""


def cli(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory) -> Path:
    """The tiny model, written by the command users run (``omostc dev tiny-flux DIR --seed 0``)."""
    return dev_model(tmp_path_factory, "tiny-flux")


@pytest.fixture(scope="session")
def global_spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("specs") / "cat.yaml"
    path.write_text(GLOBAL_ONLY, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def flux_model(tiny_flux):
    """The tiny model loaded once (fp32, CPU), for tests of the backend's parts."""
    from omostc.backends.flux.models import load_flux

    return load_flux(tiny_flux, dtype="fp32", device="cpu")


def backend(model, **options):
    """A FLUX backend on the loaded tiny model with these options."""
    from omostc.backends.flux.options import FluxOptions
    from omostc.backends.flux.render import FluxRegionalBackend

    return FluxRegionalBackend(model, FluxOptions(device="cpu", dtype="fp32", **options))


def scene_of(path: Path):
    from omostc.spec.yamlio import load_spec

    return load_spec(path)


def render(spec, out: Path, *flags, model=None, seed: int = 7):
    args = ["render", spec, "-p", "tiny-flux", "-o", out, "--seed", seed, "--width", "64", "--height", "64",
            "--steps", "2", "-q", *flags]
    if model is not None:
        args += ["--model", model]
    return cli(*args)


def png(out: Path, spec: Path, seed: int = 7) -> bytes:
    return (out / Path(spec).stem / f"{seed}.png").read_bytes()


def pixels(data: bytes):
    import io

    import numpy as np

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


# --- the offline model ------------------------------------------------------------------------

def test_tiny_flux_is_a_flux_pipeline_in_the_diffusers_layout(tiny_flux):
    from diffusers import FluxPipeline

    index = json.loads((tiny_flux / "model_index.json").read_text())
    assert index["_class_name"] == "FluxPipeline"
    parts = {"transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"}
    assert parts <= set(index)
    pipe = FluxPipeline.from_pretrained(tiny_flux, local_files_only=True)
    config = pipe.transformer.config
    assert config.guidance_embeds and config.in_channels == 64
    assert sum(p.numel() for p in pipe.transformer.parameters()) < 1_000_000  # seconds per CPU render
    assert pipe.vae.config.latent_channels == 16 and len(pipe.vae.config.block_out_channels) == 4
    t5 = pipe.tokenizer_2
    ids = t5("a cat sits on a table").input_ids
    assert ids[-1] == t5.eos_token_id == 1 and t5.pad_token_id == 0 and len(ids) <= 8  # words, not letters


@pytest.mark.slow
def test_tiny_flux_same_seed_same_bytes_and_small_keeps_flux_blocks(tmp_path):
    from diffusers import FluxTransformer2DModel

    for name in ("a", "b"):
        assert cli("dev", "tiny-flux", tmp_path / name, "--seed", "3").exit_code == 0
    for part in ("transformer", "text_encoder_2", "vae"):
        (a,), (b,) = (list((tmp_path / n / part).glob("*.safetensors")) for n in ("a", "b"))
        assert a.read_bytes() == b.read_bytes(), part
    assert (tmp_path / "a" / "tokenizer_2" / "tokenizer.json").read_bytes() == \
        (tmp_path / "b" / "tokenizer_2" / "tokenizer.json").read_bytes()
    res = cli("dev", "tiny-flux", tmp_path / "small", "--size", "small")
    assert res.exit_code == 0, res.output
    config = FluxTransformer2DModel.load_config(tmp_path / "small" / "transformer")
    assert (config["num_layers"], config["num_single_layers"]) == (19, 38)
    assert "tiny-flux" in cli("dev", "--help").output


# --- the loop against diffusers' FluxPipeline ------------------------------------------------

@pytest.mark.parametrize("steps,size", [(4, 128), (3, 192)])
def test_global_only_scene_gives_fluxpipelines_latents(tiny_flux, flux_model, global_spec, steps, size):
    """Padded to the maximum (as FluxPipeline encodes), the same prompt, seed and steps give the
    same latents as diffusers' FluxPipeline; trimmed (the default), the same as FluxPipeline
    given the trimmed T5 states: omostc's loop is FLUX's."""
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(tiny_flux, local_files_only=True)
    for pad in (True, False):
        flux = backend(flux_model, pad_to_max=pad, max_sequence_length=96)
        ir = flux.lower(scene_of(global_spec))
        cond = flux.encoder.encode(ir, pad_to_max=pad)
        ours = flux.sample(ir, cond, None, torch.Generator().manual_seed(11), size, size, steps)
        common = dict(height=size, width=size, num_inference_steps=steps, guidance_scale=3.5,
                      generator=torch.Generator().manual_seed(11), output_type="latent", max_sequence_length=96)
        if pad:
            theirs = pipe(prompt=ir.text.texts[0], **common).images
        else:
            theirs = pipe(prompt_embeds=cond.layers[0][None], pooled_prompt_embeds=cond.pooled[None], **common).images
        theirs = pipe._unpack_latents(theirs, size, size, pipe.vae_scale_factor)
        assert ours.shape == theirs.shape
        assert ((ours - theirs).norm() / theirs.norm()).item() < 1e-5, pad


@pytest.mark.slow
def test_schnell_has_no_guidance_no_shift_and_256_tokens(tmp_path, global_spec):
    from diffusers import FluxPipeline

    from omostc.backends.flux.models import load_flux

    folder = tmp_path / "schnell"
    assert cli("dev", "tiny-flux", folder, "--schnell").exit_code == 0
    model = load_flux(folder, dtype="fp32", device="cpu")
    flux = backend(model, guidance=9.0)
    assert not model.guidance_embeds and flux.max_length == 256
    assert not any(p.startswith("Distilled CFG") for p in flux.parameters(None))
    ir = flux.lower(scene_of(global_spec))
    cond = flux.encoder.encode(ir)
    ours = flux.sample(ir, cond, None, torch.Generator().manual_seed(3), 128, 128, 4)
    pipe = FluxPipeline.from_pretrained(folder, local_files_only=True)
    theirs = pipe(prompt_embeds=cond.layers[0][None], pooled_prompt_embeds=cond.pooled[None], height=128, width=128,
                  num_inference_steps=4, guidance_scale=0.0, generator=torch.Generator().manual_seed(3),
                  output_type="latent").images
    theirs = pipe._unpack_latents(theirs, 128, 128, pipe.vae_scale_factor)
    assert ((ours - theirs).norm() / theirs.norm()).item() < 1e-5
    from omostc.backends.flux import flow

    assert torch.allclose(flow.sigmas(model.scheduler_config, 4, 4096)[:-1], torch.linspace(1.0, 0.25, 4))


def test_schedule_is_fluxs_and_img2img_runs_the_last_steps(tiny_flux):
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift as diffusers_shift

    from omostc.backends.flux import flow

    config = dict(FlowMatchEulerDiscreteScheduler.load_config(tiny_flux / "scheduler"))
    assert flow.calculate_shift(4096) == pytest.approx(diffusers_shift(4096))
    full = flow.sigmas(config, 10, 1024)
    assert len(full) == 11 and full[0] == 1.0 and full[-1] == 0 and bool((full[:-1] > full[1:]).all())
    assert flow.sigmas(config, 10, 4096)[5] > full[5]  # larger images: shifted towards noise
    part = flow.sigmas(config, 4, 1024, strength=0.4)
    assert len(part) == 5 and torch.equal(part, flow.sigmas(config, 10, 1024)[-5:])
    fixed = flow.sigmas(config, 4, 1024, shift=1.0)
    assert torch.allclose(fixed[:-1], torch.linspace(1.0, 0.25, 4))
    x = torch.randn(2, 16, 6, 10)
    assert torch.equal(flow.unpack(flow.pack(x), 6, 10), x)
    assert flow.image_ids(3, 5)[7].tolist() == [0, 1, 2]


# --- lowering ---------------------------------------------------------------------------------

def test_each_layer_is_one_t5_text_in_omosts_order_and_long_ones_are_warned(tiny_flux, flux_model, tmp_path):
    flux = backend(flux_model)
    ir = flux.lower(scene_of(REPO / "specs" / "cat-in-room.yaml"))
    region = ir.layers[1]
    assert ir.text.texts[1] == " ".join([*region.prefixes, *region.suffixes])
    assert ir.text.texts[1].startswith(ir.layers[0].prefixes[0])  # the global description is the root
    tok = flux.model.tokenizer_2
    assert ir.text.ids[1] == tok(ir.text.texts[1]).input_ids and ir.warnings == []
    shown = ir.to_dict(ids=True)["layers"][1]
    assert shown["t5_tokens"] == len(ir.text.ids[1]) and shown["t5_ids"] == ir.text.ids[1]
    cond = flux.encoder.encode(ir)
    assert cond.lengths == [len(ids) for ids in ir.text.ids]  # trimmed: each its own length
    assert [c.shape[0] for c in flux.encoder.encode(ir, pad_to_max=True).layers] == [512] * len(ir.layers)
    short = backend(flux_model, max_sequence_length=16).lower(scene_of(REPO / "specs" / "cat-in-room.yaml"))
    assert all(len(ids) == 16 and ids[-1] == 1 for ids in short.text.ids)
    assert "global layer: its prompt is" in short.warnings[0].message
    assert "more than the 16 FLUX reads" in short.warnings[0].message
    res = cli("render", REPO / "specs" / "cat-in-room.yaml", "-p", "tiny-flux", "--model", tiny_flux, "-o", tmp_path,
              "--width", "64", "--height", "64", "--steps", "1", "--max-sequence-length", "16")
    assert res.exit_code == 0, res.output
    assert "T5 tokens, more than the 16" in res.output


def test_the_loop_feeds_every_layers_tokens_in_the_regional_steps_then_the_global_ones(flux_model):
    flux = backend(flux_model, regional_steps=0.5)
    ir = flux.lower(scene_of(REPO / "specs" / "dragon.yaml"))
    cond = flux.encoder.encode(ir)
    transformer = flux_model.transformer
    before = dict(transformer.attn_processors)
    seen = []

    def spy(module, args, kwargs):
        text, ids = kwargs["encoder_hidden_states"], kwargs["txt_ids"]
        seen.append((text.shape[1], ids.shape[0], bool((ids == 0).all()),
                     {type(p).__name__ for p in module.attn_processors.values()}))

    hook = transformer.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        flux.sample(ir, cond, None, torch.Generator().manual_seed(1), 64, 64, 4)
    finally:
        hook.remove()
    total, first = sum(cond.lengths), cond.lengths[0]
    assert [(n, m, zero) for n, m, zero, _ in seen] == [(total, total, True)] * 2 + [(first, first, True)] * 2
    assert all("RegionalFluxAttnProcessor" in kinds for *_, kinds in seen)
    assert {k: type(v) for k, v in transformer.attn_processors.items()} == {k: type(v) for k, v in before.items()}
    assert cond.layers[0].shape[0] == len(ir.text.ids[0]) and len(cond.layers) == len(ir.layers) > 1


def test_an_ir_lowered_for_another_backend_is_refused(flux_model, global_spec):
    from omostc.diagnostics import RenderError
    from omostc.ir.lowering import lower
    from omostc.spec.render import RenderOptions

    flux = backend(flux_model)
    with pytest.raises(RenderError, match="lower it with this backend"):
        flux.render(lower(scene_of(global_spec)), RenderOptions(width=64, height=64, steps=1), [1])


def test_omosts_batch_noise_is_image_k_of_one_draw(flux_model, global_spec):
    """--batch-seeds omost on FLUX: image k's noise is the k-th of ``batch`` drawn from one
    generator at once, so image 0 of a batch of one is the plain seed's picture and image 1 of
    two is neither seed 5's nor seed 6's own."""
    from omostc.backends.base import Noise
    from omostc.backends.common.sampling import draw_noise
    from omostc.spec.render import RenderOptions

    both = torch.randn((2, 3, 4), generator=torch.Generator().manual_seed(5))
    assert torch.equal(draw_noise(torch.Generator().manual_seed(5), (3, 4), torch.float32, 1, 2), both[1:])
    flux = backend(flux_model)
    ir = flux.lower(scene_of(global_spec))
    options = RenderOptions(width=64, height=64, steps=2)
    plain5, plain6, first, second = (pixels_of(im) for im in flux.render(
        ir, options, [5, 6, Noise(5, 0, 1), Noise(5, 1, 2)]))
    assert (plain5 == first).all()
    assert not (second == plain5).all() and not (second == plain6).all()


def pixels_of(image):
    import numpy as np

    return np.asarray(image)


# --- rendering through the command users run -------------------------------------------------

@pytest.mark.slow
def test_every_spec_renders_on_tiny_flux_same_seed_same_bytes(tiny_flux, tmp_path):
    res = render(SPECS[0], tmp_path / "a", *[str(s) for s in SPECS[1:]], model=tiny_flux)
    assert res.exit_code == 0, res.output
    for spec in SPECS:
        with Image.open(tmp_path / "a" / spec.stem / "7.png") as image:
            assert image.size == (64, 64)
            record = json.loads(image.text["omostc.render"])
            assert record["backend"] == "flux" and record["backend_options"]["guidance"] == 3.5
            assert "Sampler: Euler (flow matching)" in image.text["parameters"]
    again = render(SPECS[0], tmp_path / "b", model=tiny_flux)
    assert again.exit_code == 0, again.output
    assert png(tmp_path / "a", SPECS[0]) == png(tmp_path / "b", SPECS[0])


@pytest.mark.slow
def test_from_png_rerenders_exactly(tiny_flux, tmp_path):
    spec = REPO / "specs" / "dragon.yaml"
    res = render(spec, tmp_path / "first", "--guidance", "5", "--pad-to-max", "--max-sequence-length", "40",
                 model=tiny_flux)
    assert res.exit_code == 0, res.output
    first = tmp_path / "first" / "dragon" / "7.png"
    again = cli("render", "--from-png", first, "-o", tmp_path / "again", "-q")
    assert again.exit_code == 0, again.output
    (out,) = (tmp_path / "again").rglob("*.png")
    assert (pixels(out.read_bytes()) == pixels(first.read_bytes())).all()
    record = json.loads(Image.open(out).text["omostc.render"])
    assert record["backend_options"]["guidance"] == 5 and record["backend_options"]["pad_to_max"] is True
    other = render(spec, tmp_path / "other", "--guidance", "1", model=tiny_flux)
    assert other.exit_code == 0 and png(tmp_path / "other", spec) != first.read_bytes()


@pytest.mark.slow
def test_sketch_start_and_highres_pass(tiny_flux, global_spec, tmp_path):
    res = render(global_spec, tmp_path, "--sketch-strength", "0.9", "--highres-scale", "2", "--highres-steps", "2",
                 model=tiny_flux)
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "cat" / "7.png") as image:
        assert image.size == (128, 128)
        assert "Hires upscale: 2" in image.text["parameters"] and "CFG scale: 1.0" in image.text["parameters"]
        assert "Distilled CFG Scale: 3.5" in image.text["parameters"]
    plain = render(global_spec, tmp_path / "plain", model=tiny_flux)
    assert plain.exit_code == 0
    sketch = render(global_spec, tmp_path / "sketch", "--sketch-strength", "0.5", model=tiny_flux)
    assert sketch.exit_code == 0 and png(tmp_path / "sketch", global_spec) != png(tmp_path / "plain", global_spec)


@pytest.mark.slow
def test_offload_on_a_cpu_is_a_no_op_not_a_failure(tiny_flux, tmp_path):
    """On a CPU the weights already rest in CPU memory; accelerate's sequential offload with the
    CPU as its execution device fails (diffusers' FluxPipeline too), so offload changes nothing."""
    spec = REPO / "specs" / "dragon.yaml"
    plain = render(spec, tmp_path / "plain", model=tiny_flux)
    assert plain.exit_code == 0, plain.output
    for flag in ("--offload", "--sequential-offload"):
        res = render(spec, tmp_path / flag, flag, model=tiny_flux)
        assert res.exit_code == 0 and "0 failed" in res.output, res.output
        assert (pixels(png(tmp_path / flag, spec)) == pixels(png(tmp_path / "plain", spec))).all()


@pytest.mark.slow
def test_single_file_transformer_with_the_rest_from_a_folder(tiny_flux, global_spec, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(next((tiny_flux / "transformer").glob("*.safetensors")))
    single = tmp_path / "flux-transformer.safetensors"
    save_file(state, single)
    folder = render(global_spec, tmp_path / "folder", model=tiny_flux)
    res = render(global_spec, tmp_path / "single", "--base-model", tiny_flux, model=single)
    assert folder.exit_code == 0 and res.exit_code == 0, res.output
    assert (pixels(png(tmp_path / "single", global_spec)) == pixels(png(tmp_path / "folder", global_spec))).all()


# --- settings and errors ------------------------------------------------------------------------

def test_profiles_are_shipped_and_checked():
    from omostc.batch.profile import load_profile

    res = cli("profiles")
    for name in ("flux-dev", "flux-schnell", "tiny-flux"):
        assert name in res.output
        assert load_profile(name).backend == "flux"
    assert load_profile("flux-schnell").render.steps == 4
    assert load_profile("flux-schnell").options.max_sequence_length == 256
    assert load_profile("flux-dev").options.guidance == 3.5
    assert load_profile("tiny-flux").render.cfg == 1.0  # no CFG pass: the PNG's parameters say CFG 1


def test_the_regional_options_are_the_attentions_with_its_defaults():
    import dataclasses

    from omostc.backends.flux.attention import RegionalAttentionOptions
    from omostc.backends.flux.options import FluxOptions, regional_options

    ours = {f.name: f.default for f in dataclasses.fields(FluxOptions)}
    for f in dataclasses.fields(RegionalAttentionOptions):
        if f.name != "reference":  # set by the processor option
            assert f.name in ours and ours[f.name] == f.default, f.name
    assert regional_options(FluxOptions(processor="reference", base_ratio=0.1)) == \
        RegionalAttentionOptions(reference=True, base_ratio=0.1)


def test_bad_flux_settings_fail_before_loading(tmp_path, global_spec):
    res = render(global_spec, tmp_path, "--quantize", "nf4", "--sequential-offload", model=tmp_path / "nowhere")
    assert res.exit_code == 2 and "does not go with sequential_offload" in res.output  # a usage error
    res = render(global_spec, tmp_path, "--max-sequence-length", "600")
    assert res.exit_code == 2 and "at most 512" in res.output
    res = render(global_spec, tmp_path, "--guidance", "nan")
    assert res.exit_code == 2
    res = cli("render", global_spec, "-p", "tiny", "-o", tmp_path, "--guidance", "2")
    assert res.exit_code != 0 and "not an option of the 'sdxl' backend" in res.output


def test_models_that_do_not_load_are_errors_not_tracebacks(tmp_path, global_spec, tiny_model_dir):
    res = render(global_spec, tmp_path, model=tmp_path / "nowhere")
    assert "cannot load FLUX" in res.output and "Traceback" not in res.output
    res = render(global_spec, tmp_path / "sdxl", model=tiny_model_dir)
    assert "not a FLUX.1 pipeline" in res.output or "cannot load FLUX" in res.output
    res = render(global_spec, tmp_path / "builtin", model="builtin:tiny-sdxl")
    assert "no built-in FLUX model 'builtin:tiny-sdxl'" in res.output and "builtin:tiny-flux" in res.output
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"\0" * 16)
    res = render(global_spec, tmp_path / "bin", model=bad)
    assert "must be .safetensors or .sft" in res.output


def test_nf4_on_a_cpu_is_a_clear_error(tmp_path, global_spec):
    """diffusers' bitsandbytes quantizer needs a CUDA GPU: said before loading, not a RuntimeError."""
    res = render(global_spec, tmp_path, "--quantize", "nf4", "--log", "json", model=tmp_path / "anything")
    assert res.exit_code == 1 and "quantize: nf4 needs a CUDA GPU" in res.output, res.output  # the profile's cpu
    assert "RuntimeError" not in res.output
    res = render(global_spec, tmp_path, "--quantize", "nf4", "--device", "cpu", model=tmp_path / "anything")
    assert res.exit_code == 2 and "nf4 needs a CUDA GPU" in res.output and "not device 'cpu'" in res.output


def test_nf4_without_bitsandbytes_says_so():
    import importlib.util

    from omostc.backends.flux.models import quantization
    from omostc.diagnostics import ModelError

    assert quantization("none", torch.bfloat16) is None
    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(ModelError, match="pip install bitsandbytes"):
            quantization("nf4", torch.bfloat16, "cuda")
    else:
        config = quantization("nf4", torch.bfloat16, "cuda")
        assert config.quant_kwargs["bnb_4bit_quant_type"] == "nf4"
        assert set(config.components_to_quantize) == {"transformer", "text_encoder_2"}


def test_text_cache_is_per_layer(flux_model):
    flux = backend(flux_model)
    ir = flux.lower(scene_of(REPO / "specs" / "dragon.yaml"))
    flux.encoder.encode(ir)
    misses = flux.encoder.cache.misses
    flux.encoder.encode(ir)
    assert flux.encoder.cache.misses == misses == len(set(map(tuple, ir.text.ids)))
