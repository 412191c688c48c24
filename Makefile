# omostc: every entry point a developer or CI needs. `make demo` and `make test` set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP_CONSTRAINTS ?= constraints/cpu.txt

.PHONY: setup demo test test-fast lint fuzz bench bench-full bench-gpu check-full golden schemas clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(PIP_CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(PIP_CONSTRAINTS) -e '.[dev]'
	touch $@

# The main job on the embedded default: compile the example answers in specs/src to scene specs,
# validate them, and lower one to its IR. Nothing is downloaded.
demo: setup
	$(BIN)/omostc compile -O out/specs specs/src/*
	$(BIN)/omostc validate out/specs/*.yaml
	$(BIN)/omostc lower out/specs/dragon.yaml --json --sketch out/dragon.sketch.png > out/dragon.ir.json
	$(BIN)/omostc preview out/specs/dragon.yaml -o out/dragon.preview.png
	$(BIN)/omostc decompile out/specs/dragon.yaml --fence > out/dragon.canvas.md
	$(BIN)/omostc render out/specs/*.yaml -o out/previews -q
	$(BIN)/omostc render out/specs/dragon.yaml -p tiny -o out/renders -q
	@echo "demo: specs in out/specs/; for the dragon scene: IR (out/dragon.ir.json), layout preview"
	@echo "      (out/dragon.preview.png), colour sketch (out/dragon.sketch.png), Canvas code (out/dragon.canvas.md);"
	@echo "      every scene's preview render (out/previews/, the default profile) and one render through the whole"
	@echo "      pipeline with the offline random-weight model (out/renders/dragon/12345.png: noise, as its weights"
	@echo "      are random; -p realvisxl-v4 renders real pictures)."

test: setup
	$(BIN)/python -m pytest -q

# ruff (pyflakes, pycodestyle, isort, pyupgrade, bugbear) and mypy, configured in pyproject.toml.
lint: setup
	$(BIN)/ruff check omostc tests benchmarks
	$(BIN)/mypy

# All but the heavy tests (marked slow in tests/: Ray, kill -9, LLM sampling, the longest renders), with
# short fuzz runs: under a minute on 2 idle cores. `make test` (CI) runs everything.
test-fast: setup
	OMOSTC_FUZZ_EXAMPLES=100 $(BIN)/python -m pytest -q -m "not slow"

# Hunt longer with the hypothesis fuzz targets (Canvas parser and input files; spec, profile and
# PNG-settings loaders): OMOSTC_FUZZ_EXAMPLES examples each (the suite runs a few hundred).
fuzz: setup
	OMOSTC_FUZZ_EXAMPLES=$${OMOSTC_FUZZ_EXAMPLES:-20000} $(BIN)/python -m pytest -q tests/test_hardening_input.py \
		tests/test_hardening_spec.py -k fuzz

bench: setup
	$(BIN)/python benchmarks/bench_compile.py
	$(BIN)/python benchmarks/bench_lower.py
	$(BIN)/python benchmarks/bench_render.py --size small --res 512
	$(BIN)/python benchmarks/bench_runner.py
	$(BIN)/python benchmarks/bench_grammar.py
	$(BIN)/python benchmarks/bench_flux.py

# SDXL's own UNet (2.6B parameters, random weights): about 12 minutes and 17 GB on a 2-core CPU.
bench-full: setup
	$(BIN)/python benchmarks/bench_render.py --size full --res 512 --steps 2

# On a GPU: SDXL's own UNet and FLUX.1-dev's transformer at 1024 x 1024 in bf16, random weights
# (seconds per step, peak VRAM, ratios; FLUX for 0, 2, 4, 8 and 16 regions). About 3 minutes on an H100.
bench-gpu: setup
	$(BIN)/python benchmarks/bench_render.py --size full --res 1024 --steps 10 --device cuda
	$(BIN)/python benchmarks/bench_flux_gpu.py --masked

# A full-size SDXL single-file checkpoint written, loaded offline and compared: 7 GB disk, 15 GB memory.
check-full: setup
	$(BIN)/python benchmarks/check_single_file_full.py

# Explicit refreshes of generated files; review their diffs before committing.
golden: setup
	$(BIN)/python tests/refresh_golden.py

schemas: setup
	$(BIN)/omostc schema -o schemas/scene.schema.json
	$(BIN)/omostc schema --kind profile -o schemas/profile.schema.json
	$(BIN)/omostc schema --kind manifest-row -o schemas/manifest-row.schema.json
	$(BIN)/omostc schema --kind log-event -o schemas/log-event.schema.json

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
