"""How fast Herald reads bounce messages, and how many of the samples it classifies right.

``.venv/bin/python bench/bounces.py [--n 4000] [--runs 3]``

Reads the real-looking samples in tests/data/bounces (Postfix DSN, Exchange NDR, Gmail DSN, Exim text
bounce, delay warning, out-of-office, ARF complaint, unrelated mail) round-robin, ``n`` messages per
run, with :func:`bot.recipients.bounce_mail.parse_message`; in the same run, two baselines over the
same bytes: ``email.message_from_bytes`` alone (the floor: parsing MIME at all) and
``flufl.bounce.all_failures`` after it (the library alone). Prints messages per second, medians of
``runs``, and the ratio of Herald's figure to each baseline; then the share of samples whose kind,
recipient, status and action match tests/data/bounces/expected.json.
"""

from __future__ import annotations

import argparse
import email
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from flufl.bounce import all_failures

from bot.recipients.bounce_mail import parse_message

SAMPLES = Path(__file__).resolve().parent.parent / "tests" / "data" / "bounces"


def classify(raw: bytes) -> list[str]:
    parsed = parse_message(raw, "bounces")
    if not parsed.reports:
        return [parsed.kind]
    first = parsed.reports[0]
    return [parsed.kind, first.recipient, first.status, first.action]


def rate(messages: list[bytes], read: Callable[[bytes], object]) -> float:
    started = time.perf_counter()
    for raw in messages:
        read(raw)
    return len(messages) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    expected: dict[str, list[str]] = json.loads((SAMPLES / "expected.json").read_text())
    samples = {name: (SAMPLES / name).read_bytes() for name in sorted(expected)}
    corpus = list(samples.values())
    messages = [corpus[i % len(corpus)] for i in range(args.n)]
    paths: dict[str, Callable[[bytes], object]] = {
        "email.message_from_bytes": email.message_from_bytes,
        "flufl.bounce.all_failures": lambda raw: all_failures(email.message_from_bytes(raw)),
        "herald parse_message": lambda raw: parse_message(raw, "bounces"),
    }
    rate(messages[:200], paths["herald parse_message"])  # warm-up
    figures: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.runs):
        for name, read in paths.items():
            figures[name].append(rate(messages, read))
    medians = {name: statistics.median(values) for name, values in figures.items()}
    herald = medians["herald parse_message"]
    print(f"{args.n} messages, {len(corpus)} samples round-robin, medians of {args.runs}:")
    for name, value in medians.items():
        print(f"  {name:28} {value:9,.0f} msg/s   herald/this {herald / value:.2f}x")
    right = [name for name, raw in samples.items() if classify(raw) == expected[name]]
    print(f"classified correctly: {len(right)}/{len(samples)} ({len(right) / len(samples):.0%})")
    for name in sorted(set(samples) - set(right)):
        print(f"  wrong: {name}: {classify(samples[name])} != {expected[name]}")


if __name__ == "__main__":
    main()
