"""Your own data, end to end: every command of the README's walk-through on a real rating log, timed.

    python bench/own_data.py --data ../shared/data/epinions/ratings.tsv [--json]

The file is copied without its header line (as such logs often come) into --work, then each
command runs in its own process, described once at ``train`` (``--names``, ``--duplicates last``)
and afterwards given only the model folder. For each: wall-clock seconds and the process's peak
RSS, and the command itself (so it can be run again by hand). The acceptance lines: every command
<= 180 s and <= 3 GB (issue 13); with ``--auto`` the most accurate model's own commands too --
train --preset auto, recommend with reasons, similar, report -- each <= 180 s and <= 1.5 GB
(issue 26). Run it on a quiet machine: the numbers are the command's, not a median; the load
average before and after is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

LIMIT_SECONDS, LIMIT_MB = 180.0, 3072.0
AUTO_LIMIT_MB = 1536.0  # the --preset auto model's commands
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
    log.print(f"$ collabkit {shlex.join(argv)}")
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
        "command": name, "argv": ["collabkit", *argv], "seconds": round(seconds, 2),
        "peak_rss_mb": peak[-1] if peak else None, "ok": proc.returncode == 0, "output": out,
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
    p.add_argument("--item-columns", default="category", help="auto's train: columns describing the item ('' for none)")
    p.add_argument("--budget", type=int, help="--preset auto's budget (s; default: auto's own, 150)")
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
        extra = ["--budget", str(args.budget)] if args.budget else []
        extra += ["--item-columns", args.item_columns] if args.item_columns else []
        steps += [
            ("auto: train --preset auto", ["train", *describe, "--preset", "auto", *extra, "--no-progress", "--out", str(auto), "--json"]),
            ("auto: recommend (reasons)", ["recommend", str(auto), first_user, "-n", "10", "--json"]),
            ("auto: similar", ["similar", str(auto), first_item, "-k", "10", "--json"]),
            ("auto: report", ["report", str(auto), "--out", str(args.work / "auto_report"), "--json"]),
        ]  # fmt: skip
    log.print(f"{args.data} -> {raw} (no header); {len(steps)} commands; load average {os.getloadavg()}")
    rows = [timed(name, argv, log) for name, argv in steps]
    for r in rows:
        limit = AUTO_LIMIT_MB if r["command"].startswith("auto:") else LIMIT_MB
        r["within_limits"] = r["ok"] and r["seconds"] <= LIMIT_SECONDS and (r["peak_rss_mb"] or 0) <= limit
    reasons = [r for r in rows if r["command"] == "auto: recommend (reasons)"]
    result = {
        "data": str(args.data), "commands": rows, "load_average_after": list(os.getloadavg()),
        "accept_all_within_limits": all(r["within_limits"] for r in rows),
    }  # fmt: skip
    if reasons and reasons[0]["ok"]:
        recs = reasons[0]["output"].get("recommendations", [])
        result["accept_auto_recommends_with_reasons"] = any(str(x.get("because", "")).startswith("because") for x in recs)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    table = Table(title=f"Own data walk-through on {args.data.name} (limits {LIMIT_SECONDS:.0f} s; "
                  f"{LIMIT_MB / 1024:.0f} GB, auto's commands {AUTO_LIMIT_MB / 1024:.1f} GB)")  # fmt: skip
    for col in ("command", "seconds", "peak RSS MB", "ok", "within limits"):
        table.add_column(col, justify="left" if col == "command" else "right")
    for r in rows:
        table.add_row(r["command"], f"{r['seconds']:.1f}", f"{r['peak_rss_mb'] or 0:.0f}", "yes" if r["ok"] else "no",
                      "yes" if r["within_limits"] else "NO")  # fmt: skip
    Console().print(table)
    print(f"load average after: {result['load_average_after']}")


if __name__ == "__main__":
    main()
