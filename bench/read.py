"""Reading a MovieLens-32M-shaped ratings CSV: the pandas reader (old) against the chunked pyarrow one.

    python bench/read.py                       # 10 M rows, human table
    python bench/read.py --rows 32000000 --json
    python bench/read.py --rows 1000000 --runs 1 --paths new
    python bench/read.py --csv ratings.csv --paths new   # a file of your own (userId,movieId,rating)

The CSV (userId,movieId,rating,timestamp with a header; 200 k users, 87 k movies, half-star
ratings, no repeated pair) is generated in a temp dir. Each (path, run) is a fresh child process:
it reads with ``read_ratings(..., timestamp_col=None)`` (the training path), then encodes with
``encode(model, ratings, compact=True)``; each step's peak RSS rise is read from VmHWM after
resetting it (/proc/self/clear_refs). "old" is the same ``read_ratings`` with the chunked path
switched off (pandas reads the whole file as text, then validates). Figures are medians.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_USERS, N_ITEMS = 200_000, 87_000


def write_csv(path: Path, n: int, seed: int = 0) -> None:
    """n distinct (user, item) pairs, Zipf-like activity and popularity, sorted like MovieLens."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    pu = 1.0 / np.arange(1, N_USERS + 1) ** 0.5
    pi = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.8
    key = np.empty(0, np.int64)
    while len(key) < n:  # top up until n distinct pairs
        m = int((n - len(key)) * 1.1) + 1000
        u = rng.choice(N_USERS, m, p=pu / pu.sum()).astype(np.int64)
        i = rng.choice(N_ITEMS, m, p=pi / pi.sum())
        key = np.unique(np.concatenate([key, u * N_ITEMS + i]))
    key = np.sort(rng.permutation(key)[:n])
    table = pa.table({
        "userId": (key // N_ITEMS + 1).astype(np.int32),
        "movieId": (key % N_ITEMS * 3 + 1).astype(np.int32),  # sparse ids, as MovieLens's are
        "rating": rng.integers(1, 11, n) / 2,
        "timestamp": rng.integers(789_652_009, 1_697_164_144, n),
    })  # fmt: skip
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="none"))


def _kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def _measure(fn):  # (result, seconds, peak RSS rise in bytes)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    before = _kb("VmRSS")
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t, (_kb("VmHWM") - before) * 1024


def child(path: str, which: str) -> dict:
    """One measurement, run in its own process."""
    import ctypes

    import pyarrow.compute
    import pyarrow.csv
    import pyarrow.parquet  # noqa: F401  (imported first: imports are not the reader's memory)

    from collabkit.core.loop import encode
    from collabkit.data import stream
    from collabkit.data.readers import read_ratings
    from collabkit.data.vocab import Vocab

    ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD: freed blocks leave the RSS
    if which == "old":
        def off(*a, **k):
            raise stream.NotPlain("switched off")

        stream.read_chunked = off
    base = _kb("VmRSS")
    data, read_s, read_peak = _measure(
        lambda: read_ratings(path, user_col="userId", item_col="movieId", scale=(0.5, 5.0))
    )
    n = len(data)
    gc.collect()
    held = (_kb("VmRSS") - base) * 1024
    frame_bytes = int(data.frame.memory_usage(deep=True, index=False).sum())

    class Model:  # encode needs only the two vocabularies
        users = Vocab(data.frame["user"], "user")
        items = Vocab(data.frame["item"], "item")

    enc, enc_s, enc_peak = _measure(lambda: encode(Model, data, compact=True))
    enc_bytes = sum(t.element_size() * t.numel() for t in (enc.users, enc.items, enc.ratings))
    return {
        "path": which, "rows": n, "read_seconds": read_s, "read_peak_bytes_per_rating": read_peak / n,
        "held_bytes_per_rating": held / n, "frame_bytes_per_rating": frame_bytes / n,
        "encode_seconds": enc_s, "encode_peak_bytes_per_rating": enc_peak / n,
        "encoded_bytes_per_rating": enc_bytes / n, "peak_rss_mb": _kb("VmHWM") / 1024,
        "dtypes": {c: str(t) for c, t in data.frame.dtypes.items()},
    }  # fmt: skip


METRICS = [
    ("read_seconds", "read s", "{:.2f}"),
    ("read_peak_bytes_per_rating", "read peak B/rating", "{:.1f}"),
    ("held_bytes_per_rating", "held B/rating (RSS)", "{:.1f}"),
    ("frame_bytes_per_rating", "frame B/rating", "{:.1f}"),
    ("encode_seconds", "encode s", "{:.2f}"),
    ("encode_peak_bytes_per_rating", "encode peak B/rating", "{:.1f}"),
    ("encoded_bytes_per_rating", "encoded B/rating", "{:.1f}"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--paths", default="old,new", help="comma-separated: old, new")
    ap.add_argument("--csv", type=Path, help="read this ratings CSV (same columns) instead of generating one")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("CSV", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        csv = args.csv or Path(tmp) / "ratings.csv"
        t = time.perf_counter()
        if args.csv is None:
            write_csv(csv, args.rows)
        gen_s = time.perf_counter() - t
        results: dict[str, dict] = {}
        for which in args.paths.split(","):
            runs = []
            for _ in range(args.runs):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(csv), which],
                    check=True, capture_output=True, text=True,
                )  # fmt: skip
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            results[which] = {k: statistics.median(r[k] for r in runs) for k, _, _ in METRICS}
            results[which]["rows"] = runs[0]["rows"]
            results[which] |= {"peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "dtypes": runs[0]["dtypes"]}
        size_mb = csv.stat().st_size / 2**20
    rows = results[next(iter(results))]["rows"]
    report = {"rows": rows, "csv_mb": size_mb, "generate_seconds": gen_s, "runs": args.runs, **results}
    if args.json:
        print(json.dumps(report))
        return
    print(f"{rows:,} rows, {size_mb:.0f} MB CSV, medians of {args.runs} run(s), one child process each")
    paths = list(results)
    print(f"{'':24}" + "".join(f"{p:>12}" for p in paths))
    for key, label, fmt in METRICS:
        print(f"{label:24}" + "".join(f"{fmt.format(results[p][key]):>12}" for p in paths))
    print(f"{'peak RSS MB (process)':24}" + "".join(f"{results[p]['peak_rss_mb']:>12.0f}" for p in paths))


if __name__ == "__main__":
    main()
