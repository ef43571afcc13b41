"""How ``PolicyEngine.decide()`` scales with the number of host-specific rules.

Builds policies with 10, 1,000 and 10,000 rules (one host each, plus a bypass rule first and a
``*.example.com`` catch-all last), then times decisions over a fixed mix of requests: hosts
spread across the whole rule list, unknown hosts that fall to the catch-all, anonymous and
logged-in subjects, ``/`` and ``/admin`` paths. Best of several rounds.

Then the regular expressions themselves (RE2, see gateway/policy/regex.py): the cost of one
search against Python's ``re``, and the nested quantifier ``^/(a+)+$`` against
``/aaa...a!``, where ``re`` backtracks exponentially and RE2 stays linear.

    uv run python bench/policy_bench.py

Targets: 10,000 rules cost at most 2x the 10-rule case; RE2's cost per character on the
nested quantifier at 1,000,000 characters is at most 2x its cost at 10,000 (linear time).
Exit status 1 if either is missed.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable

from gateway.config.yaml import load_text
from gateway.policy import PolicyEngine, Subject, Target, compile_documents
from gateway.policy.regex import compile_pattern

SIZES = (10, 1_000, 10_000)
ROUNDS = 15
DECISIONS_PER_ROUND = 20_000
TARGET_RATIO = 2.0
POLICIES = ("one_factor", "two_factor", "deny")
NESTED = "^/(a+)+$"  # Python's re: 0.6 s for 24 characters, doubling with each one more
NESTED_RE_SIZES = (16, 18, 20, 22)  # enough to show the doubling, and bounded in time
NESTED_RE2_SIZES = (1_000, 10_000, 100_000, 1_000_000)
LINEAR_RATIO = 2.0


def policy_text(size: int) -> str:
    """A policy with ``size`` rules: a bypass rule, host rules, and a catch-all."""
    lines = [
        "access_control:",
        "  default_policy: deny",
        "  rules:",
        "    - domain: public.example.com",
        "      policy: bypass",
    ]
    for i in range(size - 2):
        lines.append(f"    - domain: app{i}.example.com")
        if i % 2:
            lines.append("      resources: ['^/admin(/|$)']")
            lines.append("      subject: group:admins")
        lines.append(f"      policy: {POLICIES[i % 3]}")
    lines += ['    - domain: "*.example.com"', "      policy: one_factor"]
    return "\n".join(lines) + "\n"


def requests(size: int) -> list[tuple[Target, Subject]]:
    """64 requests: hosts spread over the rules, a few unknown hosts, two subjects."""
    hosts = size - 2
    names = []
    for k in range(56):
        index = round(k * (hosts - 1) / 55)
        # Same share of odd rules (resources + subject) at every size, so the work per
        # request is the same and only the number of rules differs.
        if index % 2 != (k // 2) % 2:
            index = index + 1 if index + 1 < hosts else index - 1
        names.append(f"app{index}.example.com")
    names += [f"unknown{k}.example.com" for k in range(6)] + ["public.example.com", "example.com"]
    subjects = [Subject(), Subject("alice", frozenset({"admins", "dev"}))]
    return [
        (Target.from_url(f"https://{name}{'/admin/x' if k % 3 == 0 else '/'}"), subjects[k % 2])
        for k, name in enumerate(names)
    ]


def one_round(engine: PolicyEngine, batch: list[tuple[Target, Subject]]) -> float:
    """Cost of one decision over one round, in microseconds."""
    decide = engine.decide
    repeat = max(1, DECISIONS_PER_ROUND // len(batch))
    start = time.perf_counter_ns()
    for _ in range(repeat):
        for target, subject in batch:
            decide(target, subject)
    return (time.perf_counter_ns() - start) / (repeat * len(batch)) / 1000


def best_of(rounds: int, call: Callable[[], object], repeat: int = 1) -> float:
    """The best of ``rounds`` timings of ``repeat`` calls, in microseconds per call."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(repeat):
            call()
        best = min(best, (time.perf_counter_ns() - start) / repeat / 1000)
    return best


def regex_calls() -> None:
    """One search of a typical resource pattern: Python's re, RE2 new text, RE2 remembered."""
    python = re.compile(r"^/admin(/|\Z)")
    ours = compile_pattern("^/admin(/|$)")
    # More distinct texts than the memo holds, so every search of a round is a miss.
    texts = [f"/admin/{index}" for index in range(20_000)]

    def each(search: Callable[[str], object]) -> Callable[[], None]:
        def run() -> None:
            for text in texts:
                search(text)

        return run

    re_us = best_of(ROUNDS, each(python.search)) / len(texts)
    miss_us = best_of(ROUNDS, each(ours.search)) / len(texts)
    hit_us = best_of(ROUNDS, lambda: ours.search("/admin/x"), repeat=len(texts))
    print(
        f"one search of ^/admin(/|$): re {re_us:.3f} µs, RE2 {miss_us:.3f} µs "
        f"(new text), {hit_us:.3f} µs (remembered)"
    )


def nested_quantifier() -> bool:
    """``^/(a+)+$`` against ``/`` + ``a`` * n + ``!`` (no match); True if RE2 stays linear.

    RE2 is timed on both paths a decision takes: the yes/no search (patterns without
    ``User``/``Group``; memoised for texts up to 256 characters, so shown from 1,000 on) and
    ``find``, which reports groups, is never memoised and on shorter texts runs an engine
    RE2 picks for them (slower per character, still linear).
    """
    python = re.compile(r"^/(a+)+\Z")
    ours = compile_pattern(NESTED)
    print(f"{NESTED} against '/' + 'a' * n + '!' (no match), µs per call:")
    print(f"{'n':>9}  {'re':>10}  {'RE2 find':>10}  {'RE2 search':>10}  {'search ns/char':>14}")
    for size in NESTED_RE_SIZES:
        text = "/" + "a" * size + "!"
        assert python.search(text) is None and ours.find(text) is None
        re_us = best_of(1, lambda text=text: python.search(text))
        find_us = best_of(ROUNDS, lambda text=text: ours.find(text))
        print(f"{size:>9,}  {re_us:>10,.0f}  {find_us:>10.2f}  {'-':>10}  {'-':>14}")
    per_char: dict[int, tuple[float, float]] = {}
    for size in NESTED_RE2_SIZES:
        text = "/" + "a" * size + "!"
        assert ours.find(text) is None and not ours.search(text)
        find_us = best_of(ROUNDS, lambda text=text: ours.find(text))
        search_us = best_of(ROUNDS, lambda text=text: ours.search(text))
        per_char[size] = (find_us / size, search_us / size)
        print(
            f"{size:>9,}  {'-':>10}  {find_us:>10.2f}  {search_us:>10.2f}"
            f"  {search_us * 1000 / size:>14.2f}"
        )
    small, large = NESTED_RE2_SIZES[1], NESTED_RE2_SIZES[-1]
    ratio = max(per_char[large][k] / per_char[small][k] for k in (0, 1))
    linear = ratio <= LINEAR_RATIO
    print(
        f"target: RE2 cost per character at {large:,} <= {LINEAR_RATIO:.0f}x at {small:,}: "
        f"{'met' if linear else 'MISSED'} ({ratio:.2f}x)"
    )
    return linear


def main() -> int:
    started = time.perf_counter()
    cases: list[tuple[int, PolicyEngine, PolicyEngine, list[tuple[Target, Subject]], float]] = []
    for size in SIZES:
        load_start = time.perf_counter()
        engine = compile_documents([load_text(policy_text(size), f"bench-{size}.yml")])
        load_seconds = time.perf_counter() - load_start
        assert len(engine.rules) == size
        uncached = PolicyEngine(engine.rules, engine.default_level, cache_size=0)
        batch = requests(size)
        for target, subject in batch:  # warm the host cache
            engine.decide(target, subject)
        cases.append((size, engine, uncached, batch, load_seconds))
    # Rounds are interleaved across sizes so that a noisy moment on a shared machine hurts
    # every size alike; the best round of each counts.
    cached = {size: float("inf") for size in SIZES}
    cold = {size: float("inf") for size in SIZES}
    for _ in range(ROUNDS):
        for size, engine, uncached, batch, _ in cases:
            cached[size] = min(cached[size], one_round(engine, batch))
            cold[size] = min(cold[size], one_round(uncached, batch))
    base = SIZES[0]
    header = ("rules", "µs/decision", "ratio", "uncached µs", "ratio", "load s")
    widths = (7, 12, 6, 12, 6, 7)
    print("  ".join(f"{name:>{width}}" for name, width in zip(header, widths, strict=True)))
    for size, *_, load_seconds in cases:
        print(
            f"{size:>7,}  {cached[size]:>12.3f}  {cached[size] / cached[base]:>5.2f}x"
            f"  {cold[size]:>12.3f}  {cold[size] / cold[base]:>5.2f}x  {load_seconds:>7.2f}"
        )
    ratio = cached[SIZES[-1]] / cached[base]
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    print(
        f"target: {SIZES[-1]:,} rules <= {TARGET_RATIO:.0f}x the {base}-rule cost: {verdict} "
        f"({ratio:.2f}x)"
    )
    print()
    regex_calls()
    print()
    linear = nested_quantifier()
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0 if ratio <= TARGET_RATIO and linear else 1


if __name__ == "__main__":
    sys.exit(main())
