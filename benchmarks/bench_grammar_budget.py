"""Every constrained answer compiles within --max-tokens, through the command users run:
``omostc generate PROMPT --model TINY --max-tokens N --seed S`` (constrained by default: the
tiny model's name lacks "omost") for seeds 0..SEEDS-1 at each budget, on the random tiny Llama
(``omostc dev tiny-llama``). Prints, per budget, how many answers compiled and how long it took.

    python benchmarks/bench_grammar_budget.py [SEEDS] [BUDGET...]    (default: 100 seeds; 256 512 4096)
"""

from __future__ import annotations

import sys
import tempfile
import time

from click.testing import CliRunner

from omostc.cli import main


def run(model: str, budget: int, seeds: int) -> tuple[int, list[str]]:
    compiled, failures = 0, []
    for seed in range(seeds):
        res = CliRunner().invoke(main, ["generate", "a cat on a table", "--model", model, "--max-tokens", str(budget),
                                        "--seed", str(seed), "-q"])
        if res.exit_code == 0:
            compiled += 1
        else:
            failures.append(f"seed {seed}: {res.stderr.strip().splitlines()[-1:]}")
        print(f"  --max-tokens {budget} seed {seed}: {'compiled' if res.exit_code == 0 else 'FAILED'} "
              f"({compiled}/{seed + 1} so far)", flush=True)
    return compiled, failures


def main_(argv: list[str]) -> None:
    seeds = int(argv[0]) if argv else 100
    budgets = [int(b) for b in argv[1:]] or [256, 512, 4096]
    with tempfile.TemporaryDirectory() as folder:
        res = CliRunner().invoke(main, ["dev", "tiny-llama", folder, "--seed", "0"])
        assert res.exit_code == 0, res.output
        for budget in budgets:
            started = time.perf_counter()
            compiled, failures = run(folder, budget, seeds)
            print(f"--max-tokens {budget}: {compiled}/{seeds} compiled ({time.perf_counter() - started:.0f} s)",
                  flush=True)
            for failure in failures[:5]:
                print("  ", failure)


if __name__ == "__main__":
    main_(sys.argv[1:])
