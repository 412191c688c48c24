"""Single-file SDXL checkpoints: written in the original layout, read back by diffusers' own
``from_single_file`` conversion, and loaded offline with SDXL base's configurations."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is a dev dependency")
pytest.importorskip("diffusers", reason="diffusers is a dev dependency")

from click.testing import CliRunner  # noqa: E402
from conftest import REPO  # noqa: E402
from helpers import assert_differ, render_pixels  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from omostc import load_spec, lower  # noqa: E402
from omostc.backends.base import RenderOptions  # noqa: E402
from omostc.backends.sdxl import checkpoint as ckpt  # noqa: E402
from omostc.backends.sdxl.configs import sdxl_base_config  # noqa: E402
from omostc.backends.sdxl.models import ModelError, export_single_file, load_sdxl, single_file_config  # noqa: E402
from omostc.backends.sdxl.render import SDXLRegionalBackend  # noqa: E402
from omostc.cli import main  # noqa: E402

COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


@pytest.fixture(scope="module")
def tiny_single_file(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "tiny-sdxl.safetensors"
    res = CliRunner().invoke(main, ["dev", "single-file", str(tiny_model_dir), str(out), "--dtype", "fp32"])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OMOSTC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
def test_single_file_loads_back_tensor_for_tensor_and_renders_the_same(tiny_model_dir, tiny_single_file):
    with safe_open(str(tiny_single_file), framework="pt") as f:
        keys = set(f.keys())
    assert {k.split(".")[0] for k in keys} == {"model", "first_stage_model", "conditioner"}
    assert not any(".resnets." in k or "down_blocks" in k for k in keys)  # no diffusers names left
    folder = load_sdxl(tiny_model_dir, dtype="fp32", device="cpu")
    single = load_sdxl(tiny_single_file, dtype="fp32", device="cpu", config=str(tiny_model_dir))
    for name in COMPONENTS:
        a, b = getattr(folder, name).state_dict(), getattr(single, name).state_dict()
        assert a.keys() == b.keys(), name
        assert [k for k in a if not torch.equal(a[k], b[k])] == [], name
    ir = lower(load_spec(REPO / "specs" / "dragon.yaml"), SDXLRegionalBackend(folder).tokenizer)
    options = RenderOptions(width=64, height=64, steps=2)
    (x,) = SDXLRegionalBackend(folder).render(ir, options, [3])
    (y,) = SDXLRegionalBackend(single).render(ir, options, [3])
    assert np.array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_render_cli_takes_a_single_file_and_its_config(tiny_model_dir, tiny_single_file, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["render", str(REPO / "specs" / "mountain-cabin.yaml"), "--model",
                                    str(tiny_single_file), "--model-config", str(tiny_model_dir), "--width", "64",
                                    "--height", "64", "--steps", "1", "--device", "cpu", "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert (out / "mountain-cabin" / "12345.png").is_file()


@pytest.mark.slow
def test_a_single_file_vae_takes_the_models_configuration(tiny_model_dir, other_vae_dir, tiny_model_with_other_vae,
                                                         tmp_path):
    """A VAE as one original-layout file (as sdxl_vae.safetensors is) for a model that is not SDXL
    base: ``--vae FILE`` reads it with the model's VAE configuration, and that VAE encodes the
    sketch and decodes: the picture is the one of a model whose own VAE it is."""
    from diffusers import AutoencoderKL

    other = AutoencoderKL.from_pretrained(other_vae_dir)
    vae_file = tmp_path / "vae.safetensors"
    save_file(ckpt.vae_state_dict(other.state_dict(), len(other.config.block_out_channels), prefix=""), str(vae_file))
    sketch = ["--sketch-strength", "0.5"]
    own = render_pixels(tmp_path / "own", tiny_model_dir, *sketch)
    swapped = render_pixels(tmp_path / "file", tiny_model_dir, "--vae", str(vae_file), *sketch)
    assert_differ(own, swapped)
    assert np.array_equal(swapped, render_pixels(tmp_path / "copy", tiny_model_with_other_vae, *sketch))


def test_a_single_file_sdxl_vae_loads_offline(tmp_path, cache, monkeypatch):
    """An SDXL-sized VAE file (as sdxl_vae.safetensors) gets SDXL base's VAE configuration."""
    from diffusers import AutoencoderKL

    from omostc.backends.sdxl.models import load_vae

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(sdxl_base_config() / "vae")).to(torch.float16)
    vae_file = tmp_path / "sdxl_vae.safetensors"
    save_file(ckpt.vae_state_dict(vae.state_dict(), 4, prefix=""), str(vae_file))
    loaded = load_vae(vae_file, dtype="fp16")
    a, b = vae.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_export_errors_are_clear(tmp_path):
    res = CliRunner().invoke(main, ["dev", "single-file", str(tmp_path / "missing"), str(tmp_path / "x.safetensors")])
    assert res.exit_code == 1 and res.stderr.startswith("error: cannot load SDXL from")
    assert "Traceback" not in res.output
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(ModelError, match="no original-layout name for UNet key 'image_proj.weight'"):
        ckpt.unet_state_dict({"image_proj.weight": torch.zeros(1)}, 2)


def test_export_dtype_is_the_files(tiny_model_dir, tmp_path):
    out = export_single_file(tiny_model_dir, tmp_path / "half.safetensors", dtype="fp16")
    with safe_open(str(out), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
        assert f.metadata()["written_by"] == "omostc"


def test_sdxl_base_configuration_is_sdxl_base(cache):
    """Built on the meta device from the offline configuration: SDXL base's parameter counts."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = sdxl_base_config()
    assert folder.parent == cache and (folder / "tokenizer_2" / "vocab.json").is_file()
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        te1 = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
    counts = [sum(p.numel() for p in m.parameters()) for m in (unet, vae, te1, te2)]
    assert counts == [2_567_463_684, 83_653_863, 123_060_480, 694_659_840]
    assert vae.config.force_upcast and vae.config.scaling_factor == 0.13025


def test_full_sdxl_layout_names_and_diffusers_reads_them_back(cache):
    """The real SDXL shapes (two resnets per block, ten-deep transformers, 32 OpenCLIP blocks):
    original key names as in Stability's release, and diffusers' converters invert every one."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders import single_file_utils as su
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = sdxl_base_config()
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        te1 = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
    original = ckpt.original_state_dict(unet, vae, te1, te2)
    for name, shape in {
        "model.diffusion_model.input_blocks.3.0.op.weight": (320, 320, 3, 3),
        "model.diffusion_model.input_blocks.8.1.transformer_blocks.9.attn2.to_k.weight": (1280, 2048),
        "model.diffusion_model.middle_block.1.transformer_blocks.9.ff.net.0.proj.weight": (10240, 1280),
        "model.diffusion_model.output_blocks.2.2.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.8.0.skip_connection.weight": (320, 640, 1, 1),
        "model.diffusion_model.label_emb.0.0.weight": (1280, 2816),
        "first_stage_model.encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "first_stage_model.decoder.up.3.upsample.conv.weight": (512, 512, 3, 3),
        "conditioner.embedders.0.transformer.text_model.encoder.layers.11.mlp.fc2.weight": (768, 3072),
        "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight": (3840, 1280),
        "conditioner.embedders.1.model.text_projection": (1280, 1280),
        ckpt.SDXL_BASE_KEY: (1280,),
    }.items():
        assert tuple(original[name].shape) == shape, name
    fused = 4 * te2.config.num_hidden_layers  # q, k, v weights and biases: 6 tensors become 2 per block
    assert len(original) == sum(len(m.state_dict()) for m in (unet, vae, te1, te2)) - fused

    back = su.convert_ldm_unet_checkpoint(original, dict(unet.config))
    assert back.keys() == unet.state_dict().keys()
    back = su.convert_ldm_vae_checkpoint(original, dict(vae.config))
    assert back.keys() == vae.state_dict().keys()
    back = su.convert_ldm_clip_checkpoint(original)
    assert {k.removeprefix("text_model.") for k in back} == set(te1.state_dict())
    back = su.convert_open_clip_checkpoint(te2, original, prefix=ckpt.OPEN_CLIP_PREFIX)
    assert back.keys() == te2.state_dict().keys()


def test_which_configuration_a_single_file_gets(tmp_path, cache, tiny_model_dir):
    def checkpoint(name, in_channels=4, **extra):
        path = tmp_path / f"{name}.safetensors"
        save_file({ckpt.SDXL_BASE_KEY: torch.zeros(1),
                   ckpt.UNET_PREFIX + "input_blocks.0.0.weight": torch.zeros(1, in_channels, 1, 1), **extra}, str(path))
        return path

    sdxl = checkpoint("sdxl")
    assert single_file_config(sdxl, None) == str(cache / "sdxl-base-config")
    # diffusers infers the others (and asks the hub for their configurations)
    assert single_file_config(checkpoint("inpaint", in_channels=9), None) is None
    assert single_file_config(checkpoint("playground", edm_mean=torch.zeros(1, 4, 1, 1)), None) is None
    other = tmp_path / "other.safetensors"
    save_file({"model.diffusion_model.out.2.bias": torch.zeros(1)}, str(other))
    assert single_file_config(other, None) is None
    assert single_file_config(other, str(tiny_model_dir)) == str(tiny_model_dir)
    assert single_file_config(tmp_path / "x.ckpt", None) is None
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ModelError, match="not a readable .safetensors"):
        single_file_config(broken, None)
