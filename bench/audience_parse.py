"""Audience parser scaling: parse time for 50,000 terms against 5,000 terms in the same run.

Two shapes: plain AND (``dept:d0 dept:d1 ...``) and OR of parenthesised pairs
(``(dept:d0 -site:s0) OR (dept:d1 -site:s1) ...``).

A linear parser takes about 10x the time for 10x the text; the old parser copied the rest of the
query for every term and took about 100x. Prints the median of ``--runs`` for each size and the ratio.

    .venv/bin/python bench/audience_parse.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from bot.directory import audience

SHAPES = {
    "AND": lambda terms: " ".join(f"dept:d{i}" for i in range(terms)),
    "OR of groups": lambda terms: " OR ".join(f"(dept:d{i} -site:s{i})" for i in range(terms // 2)),
}


def seconds(shape: str, terms: int) -> float:
    parser = audience._Parser(SHAPES[shape](terms))
    parser.counted = -(10**9)  # lift the 200-term cap: this measures the parser, not the cap
    started = time.perf_counter()
    parser.parse()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for shape in SHAPES:
        small = statistics.median(seconds(shape, 5_000) for _ in range(args.runs))
        large = statistics.median(seconds(shape, 50_000) for _ in range(args.runs))
        print(f"{shape}: 5,000 terms: {small * 1000:.1f} ms (baseline)")
        print(f"{shape}: 50,000 terms: {large * 1000:.1f} ms")
        print(f"{shape}: ratio {large / small:.1f}x for 10x the text (linear ~10x, quadratic ~100x)")


if __name__ == "__main__":
    main()
