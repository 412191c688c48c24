import os
from functools import lru_cache
from pathlib import Path

import pytest

pytest_plugins = ["fake_llm_server"]  # the loopback LLM server fixture `serve`

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OMOSTC_SHARED", REPO.parent / "shared"))
CORPUS = SHARED / "corpus"
TRANSCRIPT = SHARED / "reference" / "transcript"


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("[0-9][0-9][0-9].txt")) if CORPUS.is_dir() else []


@lru_cache(maxsize=1)
def compiling_corpus() -> list[Path]:
    """The corpus files omostc compiles (the others are checked in test_corpus)."""
    from omostc import CompileError, compile_file

    out = []
    for path in corpus_files():
        try:
            compile_file(path)
            out.append(path)
        except CompileError:
            pass
    return out


@lru_cache(maxsize=1)
def omost_accepted_corpus() -> list[Path]:
    """The corpus files Omost's own (exec-based) code accepts."""
    import omost_reference as omost

    out = []
    for path in corpus_files():
        try:
            omost.run_program(omost.extract_program_code(path))
            out.append(path)
        except Exception:
            pass
    return out


needs_shared = pytest.mark.skipif(
    not CORPUS.is_dir(),
    reason=f"the shared corpus is not here ({CORPUS}); it exists on the developers' machines and in CI",
)


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def clip_reference():
    """OpenAI's own simple_tokenizer.py, shipped beside the CLIP vocabulary in openai-clip."""
    import importlib.util

    from omostc.ir.clip.tokenize import find_clip_vocab

    vocab = find_clip_vocab()
    spec = importlib.util.spec_from_file_location("clip_reference_tokenizer", vocab.parent / "simple_tokenizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SimpleTokenizer(str(vocab))


def dev_model(tmp_path_factory, command: str):
    """An offline test model, written by the command users run (``omostc dev tiny-sdxl`` ...)."""
    from click.testing import CliRunner

    from omostc.cli import main

    folder = tmp_path_factory.mktemp(command)
    result = CliRunner().invoke(main, ["dev", command, str(folder), "--seed", "0"])
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    pytest.importorskip("diffusers", reason="diffusers is a dev dependency")
    return dev_model(tmp_path_factory, "tiny-sdxl")


@pytest.fixture(scope="session")
def other_vae_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model's VAE with other weights (each tensor moved by 10% of its spread, seed 1), as a
    diffusers folder: what a ``--vae`` must load and decode with."""
    torch = pytest.importorskip("torch", reason="torch is a dev dependency")
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(tiny_model_dir / "vae")
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in vae.parameters():
            spread = p.std() if p.numel() > 1 else p.abs().clamp(min=1.0)
            p.add_(torch.randn(p.shape, generator=generator) * 0.1 * spread)
    folder = tmp_path_factory.mktemp("other-vae")
    vae.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_model_with_other_vae(tiny_model_dir, other_vae_dir, tmp_path_factory):
    """A copy of the tiny model whose own ``vae/`` is ``other_vae_dir``: what ``--vae`` must equal."""
    import shutil

    folder = tmp_path_factory.mktemp("tiny-other-vae") / "model"
    shutil.copytree(tiny_model_dir, folder)
    shutil.rmtree(folder / "vae")
    shutil.copytree(other_vae_dir, folder / "vae")
    return folder
