"""Lowering: bags equal Omost's greedy partition with real token counts, masks and sketch equal
Omost's tensors, and the edge cases behave as documented."""

from __future__ import annotations

import io

import numpy as np
import omost_reference as omost
import pytest
from click.testing import CliRunner
from conftest import REPO, compiling_corpus, needs_shared, omost_accepted_corpus
from helpers import GLOBAL, REGION, program
from PIL import Image

from omostc import compile_canvas, compile_file, lower
from omostc.cli import main
from omostc.ir.clip.tokenize import default_tokenizer
from omostc.ir.masks import box_mask, feathered_box_mask

torch = pytest.importorskip("torch", reason="torch is a dev dependency: the tensors are compared with torch's own")


def scenes():
    return sorted((REPO / "specs" / "src").iterdir()) + compiling_corpus()


@pytest.fixture(scope="module")
def model_tokenizer(tmp_path_factory):
    """The tokenizer Omost's pipeline counts with: transformers' CLIPTokenizer of the model folder
    (``tokenizer(text, truncation=False, add_special_tokens=False).input_ids``), not OpenAI's
    reference tokenizer, whose ftfy cleaning straightens curly apostrophes (59 corpus
    sub-prompts count differently, and 3 layers are bagged differently)."""
    pytest.importorskip("transformers", reason="transformers is a dev dependency")
    from transformers import AutoTokenizer

    from omostc.ir.clip.tokenize import write_tokenizer_folder

    folder = write_tokenizer_folder(tmp_path_factory.mktemp("model") / "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return lambda text: tokenizer(text, truncation=False, add_special_tokens=False).input_ids


@pytest.mark.parametrize("path", scenes(), ids=lambda p: p.name)
def test_bags_equal_omosts_greedy_partition_with_real_token_counts(path, model_tokenizer):
    ir = lower(compile_file(path).scene, default_tokenizer())
    for layer, planned in zip(ir.layers, ir.text.layers):
        bags, chunks = omost.bags(layer.prefixes, layer.suffixes, model_tokenizer)
        assert planned.bags == bags
        assert planned.chunks(49406, 49407, 49407) == chunks
        assert [len(s) for s in planned.suffix_ids] == [min(len(model_tokenizer(s)), 75) for s in layer.suffixes]


@needs_shared
@pytest.mark.parametrize("path", omost_accepted_corpus(), ids=lambda p: p.name)
def test_sketch_equals_omosts_initial_latent(path):
    expected = omost.run_program(omost.extract_program_code(path)).process()["initial_latent"]
    ir = lower(compile_file(path).scene)
    assert ir.sketch.dtype == np.uint8 and np.array_equal(ir.sketch, expected)
    png = Image.open(io.BytesIO(__import__("omostc.ir.pictures", fromlist=["x"]).sketch_png(ir)))
    assert png.mode == "RGB" and np.array_equal(np.asarray(png), expected)


@pytest.mark.parametrize("size", [(1, 1), (7, 13), (64, 64), (97, 131), (128, 128), (144, 112), (90, 90), (256, 200)])
def test_masks_equal_torch_nearest_exact(size):
    rng = np.random.default_rng(sum(size))
    for _ in range(20):
        top, left = rng.integers(0, 89, size=2)
        rect = (int(top), int(rng.integers(top + 1, 91)), int(left), int(rng.integers(left + 1, 91)))
        grid = torch.zeros(90, 90)
        grid[rect[0]:rect[1], rect[2]:rect[3]] = 1
        want = torch.nn.functional.interpolate(grid[None, None], size, mode="nearest-exact")[0, 0] > 0.5
        assert np.array_equal(box_mask(rect, *size), want.numpy())


def test_initial_image_equals_omosts_blur_and_resize():
    ir = lower(compile_canvas(program(GLOBAL, REGION)).scene)
    x = torch.from_numpy(ir.sketch)[None].movedim(-1, 1) / 127.5 - 1.0
    padded = torch.nn.functional.pad(x, (40,) * 4, mode="reflect")
    x = torch.nn.functional.avg_pool2d(padded, kernel_size=(81, 81), stride=(1, 1))
    for h, w in [(1152, 896), (64, 64), (100, 75)]:
        want = torch.nn.functional.interpolate(x, (h, w))[0].numpy()
        got = ir.initial_image(h, w)
        assert got.shape == (3, h, w) and got.dtype == np.float32
        # torch sums the 81 x 81 window in float32 (errors up to ~3e-4); omostc sums in float64.
        np.testing.assert_allclose(got, want, atol=5e-4)


def test_feathered_masks():
    rect = (20, 70, 0, 45)
    hard = box_mask(rect, 90, 90)
    assert np.array_equal(feathered_box_mask(rect, 0, 90, 90), hard.astype(np.float32))
    soft = feathered_box_mask(rect, 10, 90, 90)
    assert soft.dtype == np.float32 and soft.max() == 1.0 and soft.min() == 0.0
    assert np.all(soft[~hard] == 0) and np.all(soft <= hard)
    row = soft[45]
    assert row[0] == 1.0  # the canvas border is not an edge to fade
    assert np.all(np.diff(row[30:45]) <= 0) and 0 < row[44] < 0.1  # fades toward the inner edge
    assert soft[20, 10] < 0.1 and soft[45, 10] == 1.0


def test_region_options_reach_the_ir():
    text = program(GLOBAL, REGION.replace("HTML_web_color_name='orange',",
                                          "HTML_web_color_name='orange', feather=4, weight=1.5,"))
    layer = lower(compile_canvas(text).scene).layers[1]
    assert (layer.feather, layer.weight) == (4.0, 1.5)
    assert layer.mask(64, 64).dtype == np.float32
    plain = lower(compile_canvas(program(GLOBAL, REGION)).scene).layers[1]
    assert (plain.feather, plain.weight) == (0.0, 1.0) and plain.mask(64, 64).dtype == bool


def test_edge_cases_empty_long_suffix_long_prefix():
    empty = GLOBAL.replace("['A cat sits.', 'The room is warm.']", "[]")
    ir = lower(compile_canvas(program(empty)).scene, default_tokenizer())
    assert ir.text.layers[0].bags == [[0]] and ir.warnings == []  # the tags are its one suffix
    long_suffix = GLOBAL.replace("'The room is warm.'", repr("word " * 100))
    ir = lower(compile_canvas(program(long_suffix)).scene, default_tokenizer())
    assert ir.to_dict()["layers"][0]["tokens"]["suffixes"][1] == 75
    assert any("sub-prompt 1 is longer than 75 tokens" in w.message and w.severity == "warning" for w in ir.warnings)
    long_prefix = GLOBAL.replace("'A cat on a table.'", repr("cat " * 80))
    ir = lower(compile_canvas(program(long_prefix)).scene, default_tokenizer())
    g = ir.text.layers[0]
    assert len(g.bags) == 3 and all(len(c) == 77 for c in g.chunks(49406, 49407, 49407))
    assert any("prefix alone is 81 tokens" in w.message for w in ir.warnings)
    assert lower(compile_canvas(program(long_prefix)).scene).text is None  # the neutral IR has no tokens


def test_layer_without_suffixes_gets_one_prefix_chunk():
    from omostc.ir.clip.bags import LayerBags

    layer = LayerBags(prefix_ids=[320, 269], suffix_ids=[], bags=[[]])
    assert layer.chunks(49406, 49407, 0) == [[49406, 320, 269, 49407] + [0] * 73]


def test_cli_lower_json_sketch_and_preview(tmp_path):
    spec = str(REPO / "specs" / "dragon.yaml")
    runner = CliRunner()
    res = runner.invoke(main, ["lower", spec, "--json", "--sketch", str(tmp_path / "s.png")])
    assert res.exit_code == 0, res.output
    import json

    data = json.loads(res.stdout)
    layer = data["layers"][1]
    assert set(layer["tokens"]) == {"prefix", "suffixes"} and layer["bags"][0][0] == 0
    assert sorted(i for bag in layer["bags"] for i in bag) == list(range(len(layer["suffixes"])))
    assert Image.open(tmp_path / "s.png").size == (90, 90)
    res = runner.invoke(main, ["preview", spec, "-o", str(tmp_path / "p.png"), "--width", "448", "--height", "576"])
    assert res.exit_code == 0, res.output
    image = Image.open(tmp_path / "p.png")
    assert image.size == (448, 576)
    # the picture is the sketch under the outlines: the centre of the farthest-only area keeps its colour
    sketch = lower(compile_file(REPO / "specs" / "src" / "dragon.md").scene).sketch
    assert np.asarray(image)[40, 440].tolist() == sketch[6, 88].tolist()
