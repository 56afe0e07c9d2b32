"""Your own data, end to end: every command of the README's walk-through on a real rating log, timed.

    python bench/own_data.py --data ../shared/data/epinions/ratings.tsv [--json]

The file is copied without its header line (as such logs often come) into --work, then each
command runs in its own process, described once at ``train`` (``--names``, ``--duplicates last``)
and afterwards given only the model folder. For each: wall-clock seconds and the process's peak
RSS. The acceptance line of issue 13: every command <= 180 s and <= 3 GB, except ``--preset
auto`` (its own --budget). Run it on a quiet machine: the numbers are the command's, not a median.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

LIMIT_SECONDS, LIMIT_MB = 180.0, 3072.0
MARK = "BENCH_PEAK_RSS_MB "


def child(argv: list[str]) -> None:
    """Run one collabkit command in this process, then report its peak RSS on stderr."""
    from collabkit.cli import app

    try:
        app(argv, standalone_mode=False)
    finally:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{MARK}{peak:.0f}", file=sys.stderr)


def timed(name: str, argv: list[str], log: Console) -> dict:
    """One command in a child process: seconds, peak RSS, exit status, its JSON output."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(argv)], capture_output=True, text=True,
        check=False,
    )
    seconds = time.perf_counter() - t0
    peak = [float(x[len(MARK):]) for x in proc.stderr.splitlines() if x.startswith(MARK)]
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        out = {}
    row = {
        "command": name, "seconds": round(seconds, 2), "peak_rss_mb": peak[-1] if peak else None,
        "ok": proc.returncode == 0, "output": out,
    }  # fmt: skip
    if proc.returncode:
        row["error"] = proc.stderr.strip().splitlines()[-2:] if proc.stderr.strip() else []
    log.print(f"{name:<28} {seconds:8.1f} s  {row['peak_rss_mb'] or 0:7.0f} MB  {'ok' if row['ok'] else 'FAILED'}")
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/epinions/ratings.tsv"))
    p.add_argument("--names", default="user,item,category,rating", help="the file's columns")
    p.add_argument("--work", type=Path, default=Path("out/own_data"))
    p.add_argument("--auto", action="store_true", help="also time train --preset auto")
    p.add_argument("--budget", type=int, default=600, help="--preset auto's budget (s)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(json.loads(args.child))
    log = Console(stderr=True)
    args.work.mkdir(parents=True, exist_ok=True)
    raw = args.work / "ratings.tsv"
    with args.data.open() as src, raw.open("w") as dst:  # the same log, without its header
        next(src)
        dst.writelines(src)
    first_user, first_item = raw.open().readline().split("\t")[:2]
    model, auto = args.work / "model", args.work / "auto"
    describe = ["--ratings", str(raw), "--names", args.names, "--duplicates", "last"]
    steps = [
        ("train (chapter recipe)", ["train", *describe, "--no-progress", "--out", str(model), "--json"]),
        ("evaluate", ["evaluate", str(model), "--json"]),
        ("recommend (one user)", ["recommend", str(model), first_user, "-n", "10", "--json"]),
        ("recommend-all", ["recommend-all", str(model), "--out", str(args.work / "recs.parquet"), "--json"]),
        ("similar", ["similar", str(model), first_item, "-k", "10", "--json"]),
        ("compare (4 models)", ["compare", *describe, "--models", "mean,bias,dot-bias,most-popular", "--json"]),
        ("report", ["report", str(model), "--out", str(args.work / "report"), "--json"]),
    ]  # fmt: skip
    if args.auto:
        steps.insert(1, ("train --preset auto", ["train", *describe, "--preset", "auto", "--budget", str(args.budget), "--no-progress", "--out", str(auto), "--json"]))  # fmt: skip
    log.print(f"{args.data} -> {raw} (no header); {len(steps)} commands")
    rows = [timed(name, argv, log) for name, argv in steps]
    within = [
        r["ok"] and (r["command"].startswith("train --preset auto") or (r["seconds"] <= LIMIT_SECONDS and (r["peak_rss_mb"] or 0) <= LIMIT_MB))
        for r in rows
    ]  # fmt: skip
    result = {"data": str(args.data), "commands": rows, "accept_all_within_limits": all(within)}
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    table = Table(title=f"Own data walk-through on {args.data.name} (limits {LIMIT_SECONDS:.0f} s, {LIMIT_MB / 1024:.0f} GB)")
    for col in ("command", "seconds", "peak RSS MB", "ok"):
        table.add_column(col, justify="left" if col == "command" else "right")
    for r in rows:
        table.add_row(r["command"], f"{r['seconds']:.1f}", f"{r['peak_rss_mb'] or 0:.0f}", "yes" if r["ok"] else "no")
    Console().print(table)


if __name__ == "__main__":
    main()
