"""End to end on the offline SDXL-shaped model: loading, encoding, sampling, outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is a dev dependency")
pytest.importorskip("diffusers", reason="diffusers is a dev dependency")

from click.testing import CliRunner  # noqa: E402
from conftest import REPO  # noqa: E402
from helpers import assert_differ, render_pixels  # noqa: E402
from PIL import Image  # noqa: E402

from omostc import load_spec, lower  # noqa: E402
from omostc.backends.base import RenderOptions, resolve_options  # noqa: E402
from omostc.backends.common.sampling import DiscreteSchedule  # noqa: E402
from omostc.backends.sdxl.models import ModelError, load_sdxl  # noqa: E402
from omostc.backends.sdxl.options import SDXLOptions  # noqa: E402
from omostc.backends.sdxl.render import RenderError, SDXLRegionalBackend  # noqa: E402
from omostc.batch.outputs import read_provenance  # noqa: E402
from omostc.cli import main  # noqa: E402
from omostc.ir.clip.tokenize import default_tokenizer  # noqa: E402
from omostc.spec.model import RenderSettings  # noqa: E402

SMALL = RenderOptions(width=128, height=128, steps=3)
MOUNTAIN_CABIN = REPO / "specs" / "mountain-cabin.yaml"


@pytest.fixture(scope="session")
def backend(tiny_model_dir):
    return SDXLRegionalBackend(load_sdxl(tiny_model_dir, dtype="fp32", device="cpu"))


@pytest.fixture(scope="session")
def dragon_ir(backend):
    return lower(load_spec(REPO / "specs" / "dragon.yaml"), backend.tokenizer)


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def test_tiny_model_has_the_diffusers_layout(tiny_model_dir):
    index = json.loads((tiny_model_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        assert (tiny_model_dir / part / "config.json").is_file()
        assert list((tiny_model_dir / part).glob("*.safetensors"))
    assert (tiny_model_dir / "tokenizer_2" / "vocab.json").is_file()
    unet = json.loads((tiny_model_dir / "unet" / "config.json").read_text())
    assert unet["addition_embed_type"] == "text_time" and unet["cross_attention_dim"] == 96


def test_loading_errors_are_clear(tmp_path):
    with pytest.raises(ModelError, match="cannot load SDXL"):
        load_sdxl(tmp_path, dtype="fp32", device="cpu")
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"x")
    with pytest.raises(ModelError, match="single-file checkpoint must be"):
        load_sdxl(bad, dtype="fp32", device="cpu")
    with pytest.raises(ModelError, match="dtype must be"):
        load_sdxl(tmp_path, dtype="fp64", device="cpu")
    with pytest.raises(ModelError, match="unknown device 'tpu9'"):
        load_sdxl(tmp_path, dtype="fp32", device="tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="device 'cuda' is not available: .*use --device cpu"):
            load_sdxl(tmp_path, dtype="fp32", device="cuda")


def test_same_seed_same_bytes_and_seeds_differ(backend, dragon_ir):
    a, b = backend.render(dragon_ir, SMALL, [1, 2])
    (a2,) = backend.render(dragon_ir, SMALL, [1])
    assert a.size == (128, 128) and a.mode == "RGB"
    assert np.array_equal(pixels(a), pixels(a2))
    assert not np.array_equal(pixels(a), pixels(b))


def test_fast_and_reference_processors_render_the_same_image(tiny_model_dir, backend, dragon_ir):
    reference = SDXLRegionalBackend(load_sdxl(tiny_model_dir, dtype="fp32", device="cpu"),
                                    SDXLOptions(processor="reference"))
    (fast,) = backend.render(dragon_ir, SMALL, [5])
    (ref,) = reference.render(dragon_ir, SMALL, [5])
    assert np.abs(pixels(fast) - pixels(ref)).max() <= 2


def test_text_is_encoded_once_per_distinct_chunk(backend, dragon_ir):
    cond = backend.encoder.encode(dragon_ir, "lowres")
    misses = backend.encoder.cache.misses
    again = backend.encoder.encode(dragon_ir, "lowres")
    assert backend.encoder.cache.misses == misses
    assert all(torch.equal(x, y) for x, y in zip(cond.layers, again.layers))
    assert [c.shape for c in cond.layers] == [(77 * len(layer.bags), 96) for layer in dragon_ir.text.layers]


def test_encoding_is_the_penultimate_states_of_both_encoders(backend, dragon_ir):
    m = backend.model
    cond = backend.encoder.encode(dragon_ir, "lowres")
    (ids1, ids2), *_ = backend.encoder.layer_chunks(dragon_ir)[0]
    with torch.no_grad():
        h1 = m.text_encoder(torch.tensor([ids1]), output_hidden_states=True).hidden_states[-2][0]
        out2 = m.text_encoder_2.text_model(torch.tensor([ids2]), output_hidden_states=True)
    torch.testing.assert_close(cond.layers[0][:77], torch.cat([h1, out2.hidden_states[-2][0]], dim=-1))
    torch.testing.assert_close(cond.pooled, out2.pooler_output[0])
    projected = backend.encoder.encode(dragon_ir, "lowres", pooled="projected")
    torch.testing.assert_close(projected.pooled, m.text_encoder_2.text_projection(out2.pooler_output)[0])
    assert ids2[-1] == 0 and ids1[-1] == 49407  # each tokenizer's own padding


@pytest.mark.slow
def test_sketch_start_and_highres_fix(tiny_model_dir, tmp_path):
    """--sketch-strength starts from the VAE-encoded colour sketch: the picture changes with the
    strength and with the sketch's colours (which nothing else reads)."""
    recoloured = tmp_path / "recoloured.yaml"
    recoloured.write_text(MOUNTAIN_CABIN.read_text().replace("color: skyblue", "color: darkred"))

    def render(name, *flags):
        return render_pixels(tmp_path / name, tiny_model_dir, *flags, specs=[MOUNTAIN_CABIN, recoloured])

    plain, plain_recoloured = render("plain")
    strong, _ = render("0.9", "--sketch-strength", "0.9")
    weak, weak_recoloured = render("0.5", "--sketch-strength", "0.5")
    assert_differ(plain, strong, at_least=0.01)  # 2 steps at 0.9 keep the whole schedule: only the start differs
    assert_differ(plain, weak)
    assert_differ(strong, weak)
    assert np.array_equal(plain, plain_recoloured)
    assert_differ(weak, weak_recoloured)

    # the hi-res fix takes round(side * 1.5 / 64) * 64, with Python's round: 128 -> 192, and
    # 192 -> 256 (round(4.5) == 4)
    tall_big = render_pixels(tmp_path / "tall-big", tiny_model_dir, "--width", "128", "--height", "192",
                             "--sketch-strength", "0.97", "--highres-scale", "1.5", "--highres-steps", "2",
                             "--highres-denoise", "0.4")
    assert tall_big.shape == (256, 192, 3)


def test_ir_from_another_tokenizer_is_refused(backend):
    ir = lower(load_spec(REPO / "specs" / "dragon.yaml"), default_tokenizer())  # the offline tokenizer
    with pytest.raises(RenderError, match="lower it with this model's"):
        backend.render(ir, SMALL, [1])


def test_settings_precedence():
    spec = RenderSettings(width=512, steps=30, cfg=None)
    options = resolve_options(spec, {"steps": 10, "cfg": None, "highres": {"scale": 1.5}})
    assert (options.width, options.steps, options.cfg, options.highres.scale) == (512, 10, 5.0, 1.5)
    assert resolve_options(None).height == 1152


def test_cli_render_writes_pngs_with_provenance_and_rerenders_exactly(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\n")
    out = tmp_path / "out"
    args = ["render", str(REPO / "specs" / "tides-bbox.yaml"), str(bad), "--model", str(tiny_model_dir), "-o",
            str(out), "--width", "128", "--height", "128", "--steps", "2", "--images", "2", "--device", "cpu", "-q"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and "bad.yaml" in res.stderr
    first, second = out / "tides-bbox" / "12345.png", out / "tides-bbox" / "12346.png"
    assert first.is_file() and second.is_file()
    record = read_provenance(first)
    scene, options, seed = record.scene, record.options, record.seed
    assert scene == load_spec(REPO / "specs" / "tides-bbox.yaml") and seed == 12345 and options.steps == 2
    params = Image.open(first).text["parameters"]
    assert "Negative prompt: lowres" in params and "Seed: 12345" in params and "Steps: 2" in params
    again = tmp_path / "again"
    res = CliRunner().invoke(main, ["render", "--from-png", str(first), "-o", str(again), "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    assert (again / "tides-bbox" / "12345.png").read_bytes() == first.read_bytes()


def test_schedule_is_omosts():
    s = DiscreteSchedule()
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    acp = np.cumprod(1 - betas).astype(np.float32)
    np.testing.assert_allclose(s.sigmas.numpy(), ((1 - acp) / acp) ** 0.5, rtol=1e-6)
    sig = s.sigmas_for(25)
    assert len(sig) == 26 and sig[-1] == 0 and abs(sig[0].item() - s.sigma_max.item()) < 1e-4
    karras = s.karras(int(25 / 0.4))
    torch.testing.assert_close(s.sigmas_for(25, 0.4), karras[-26:])
    assert s.timestep(s.sigmas[[0, 500, 999]]).tolist() == [0, 500, 999]


@pytest.mark.slow
def test_diffusers_schedulers_by_name(tiny_model_dir, tmp_path):
    """--sampler NAME samples with that diffusers scheduler: each gives its own picture, none is
    Omost's DPM++ 2M Karras (the default), and a sketch start goes through it too."""
    def render(name, *flags):
        return render_pixels(tmp_path / name, tiny_model_dir, *flags)

    default, omost = render("default"), render("omost", "--sampler", "omost")
    same = tmp_path / "same.yaml"  # the same scene again in the same batch: the same picture
    same.write_text(MOUNTAIN_CABIN.read_text())
    euler, euler_again = render_pixels(tmp_path / "euler", tiny_model_dir, "--sampler", "EulerDiscreteScheduler",
                                       specs=[MOUNTAIN_CABIN, same])
    dpm = render("dpm", "--sampler", "DPMSolverMultistepScheduler")
    assert np.array_equal(default, omost)
    assert np.array_equal(euler, euler_again)
    assert_differ(omost, euler)
    assert_differ(omost, dpm)
    assert_differ(euler, dpm)
    assert_differ(render("euler-sketch", "--sampler", "EulerDiscreteScheduler", "--sketch-strength", "0.9"), euler)
    res = CliRunner().invoke(main, ["render", str(MOUNTAIN_CABIN), "-p", "tiny", "--model", str(tiny_model_dir),
                                    "-o", str(tmp_path / "bad"), "--sampler", "NoSuchScheduler", "-q"])
    assert res.exit_code == 2 and "unknown sampler 'NoSuchScheduler'" in res.stderr  # before anything loads


def test_vae_flag_decodes_and_encodes_with_that_vae(tiny_model_dir, other_vae_dir, tiny_model_with_other_vae,
                                                    tmp_path):
    """--vae OTHER changes the picture, and gives exactly the picture of a model whose own VAE is
    OTHER: OTHER encodes the sketch of the sketch start, and decodes."""
    sketch = ["--sketch-strength", "0.5"]
    own = render_pixels(tmp_path / "own", tiny_model_dir, *sketch)
    swapped = render_pixels(tmp_path / "vae", tiny_model_dir, "--vae", str(other_vae_dir), *sketch)
    assert_differ(own, swapped)
    assert np.array_equal(swapped, render_pixels(tmp_path / "copy", tiny_model_with_other_vae, *sketch))

def test_a_backend_made_with_an_unknown_sampler_says_so(backend, dragon_ir):
    unknown = SDXLRegionalBackend(backend.model, SDXLOptions(sampler="NoSuchScheduler"))
    with pytest.raises(RenderError, match="unknown sampler"):
        unknown.render(dragon_ir, RenderOptions(width=128, height=128, steps=2), [1])


def test_vae_override_and_dtype_loading(tiny_model_dir):
    model = load_sdxl(tiny_model_dir, dtype="bf16", device="cpu", vae=str(tiny_model_dir / "vae"), vae_dtype="fp32")
    assert model.unet.dtype == torch.bfloat16 and model.vae.dtype == torch.float32
    assert model.scheduler_config["_class_name"] == "EulerDiscreteScheduler"
    backend = SDXLRegionalBackend(model)
    ir = lower(load_spec(REPO / "specs" / "mountain-cabin.yaml"), backend.tokenizer)
    (image,) = backend.render(ir, RenderOptions(width=64, height=64, steps=2), [0])
    assert image.size == (64, 64)


@pytest.mark.slow
def test_fp16_keeps_a_force_upcast_vae_in_fp32(tiny_model_dir):
    """SDXL's own VAE overflows in fp16; its config says force_upcast, and diffusers decodes it in fp32."""
    model = load_sdxl(tiny_model_dir, dtype="fp16", device="cpu")
    assert model.vae.config.force_upcast
    assert model.unet.dtype == torch.float16 and model.vae.dtype == torch.float32
    assert load_sdxl(tiny_model_dir, dtype="fp16", device="cpu", vae_dtype="fp16").vae.dtype == torch.float16
    assert load_sdxl(tiny_model_dir, dtype="bf16", device="cpu").vae.dtype == torch.bfloat16


def test_offload_renders_the_same_image(tiny_model_dir, backend, dragon_ir):
    """accelerate's model offload hooks (on a GPU: weights on the CPU until used) change nothing."""
    offloaded = SDXLRegionalBackend(load_sdxl(tiny_model_dir, dtype="fp32", device="cpu", offload=True))
    assert offloaded.model.offloaded
    (a,) = offloaded.render(dragon_ir, SMALL, [9])
    (b,) = backend.render(dragon_ir, SMALL, [9])
    assert np.array_equal(pixels(a), pixels(b))


def test_two_backends_on_one_model_each_render_with_their_own_processors(backend, dragon_ir):
    """A second backend made on the same model installs its processors on the shared UNet; the
    first must take them back when it renders, not run the other's (or plain) attention."""
    (before,) = backend.render(dragon_ir, SMALL, [5])
    other = SDXLRegionalBackend(backend.model, SDXLOptions(processor="reference"))
    (theirs,) = other.render(dragon_ir, SMALL, [5])
    (after,) = backend.render(dragon_ir, SMALL, [5])
    assert np.array_equal(pixels(before), pixels(after))
    assert np.abs(pixels(before) - pixels(theirs)).max() <= 2  # the reference formula agrees within rounding
