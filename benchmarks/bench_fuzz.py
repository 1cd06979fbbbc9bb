"""Fuzz every untrusted entry point at scale: inputs tried, clean errors, escapes and silent garbage per family.

The families are those of ``tests/fuzz_cases.py`` (the property tests in ``tests/test_fuzz_inputs.py``
run the same generators, fewer of them, under hypothesis): measured text tables, ORSO files and
``.npy`` arrays, stack definitions (directly and through YAML text), URL query strings, saved
settings files, zipped model bundles as uploaded, bundle folders as pulled from the Hub, and
pyreflect's pickled statistics.  Each input is a valid one with 0–3 random edits, drawn from
``random.Random(seed)`` for seeds ``--seed`` … ``--seed + n - 1``, so a reported case reruns with
``run_case(family, random.Random(seed))``.

Outcomes: *accepted* (returned and passed the family's checks), *clean* (refused with the project's
error type, naming the problem), *escape* (any other exception) and *garbage* (returned something
wrong: a NaN or Q ≤ 0 in a curve, a dropped row, a coerced value, a file outside its folder).
Target (issue 15): ≥ 10,000 inputs, 0 escapes, 0 garbage.  The first few escapes and garbage cases
of each family are printed with their seeds.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_fuzz.py                 # 12,700 inputs, ≈ 50 s on 2 cores
    PYTHONPATH=. .venv/bin/python benchmarks/bench_fuzz.py --scale 5 --json fuzz.json
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import random
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

from fuzz_cases import FAMILIES, run_case  # the generators the tests use

# inputs per family at --scale 1 (the slow families, a bundle per input, get fewer)
COUNTS = {
    "measured text": 2500,
    "measured ORSO": 800,
    "measured .npy": 2000,
    "stack definitions": 1200,
    "URL values": 2000,
    "saved settings": 1000,
    "bundle zips (upload)": 600,
    "bundle folders (hub, adopt)": 600,
    "pyreflect statistics": 2000,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every family's count (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
    parser.add_argument("--family", action="append", choices=list(FAMILIES), help="only these families")
    parser.add_argument("--json", help="also write the table as JSON here")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # damaged settings files each log a warning
    warnings.simplefilter("ignore")  # orsopy and numpy warn about the spellings and headers thrown at them
    rows, shown = [], []
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as base:
        for family in args.family or list(FAMILIES):
            n = max(1, round(COUNTS[family] * args.scale))
            counts: collections.Counter = collections.Counter()
            slowest, t0 = 0.0, time.perf_counter()
            for seed in range(args.seed, args.seed + n):
                outcome = run_case(family, random.Random(seed), base)
                counts[outcome.kind] += 1
                slowest = max(slowest, outcome.seconds)
                if outcome.kind in ("escape", "garbage") and sum(1 for s in shown if s[0] == family) < 5:
                    shown.append((family, seed, outcome.kind, outcome.detail))
            rows.append(
                {
                    "family": family,
                    "inputs": n,
                    "accepted": counts["accepted"],
                    "clean errors": counts["clean"],
                    "escapes": counts["escape"],
                    "silent garbage": counts["garbage"],
                    "seconds": round(time.perf_counter() - t0, 1),
                    "slowest input s": round(slowest, 3),
                }
            )
            print(f"  {family}: {n} inputs in {rows[-1]['seconds']} s", file=sys.stderr, flush=True)
    columns = list(rows[0])
    total = {c: sum(r[c] for r in rows) for c in columns[1:-1]}
    total = {"family": "all", **total, "slowest input s": max(r["slowest input s"] for r in rows)}
    widths = [max(len(c), *(len(str(r[c])) for r in [*rows, total])) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in [*rows, total]:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(columns, widths)))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory of this process: {rss:.0f} MB (a bundle that sized its own allocation once took 2.3 GB)")
    met = total["inputs"] >= 10_000 and total["escapes"] == 0 and total["silent garbage"] == 0
    print(
        f"target (≥ 10,000 inputs, 0 escapes, 0 silent garbage): {'met' if met else 'NOT met'} "
        f"({total['inputs']:,} inputs, {total['escapes']} escapes, {total['silent garbage']} garbage)"
    )
    for family, seed, kind, detail in shown:
        print(f"  {kind} in {family}, seed {seed}: {detail}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "total": total, "peak_rss_mb": rss}, indent=1))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
