"""The service under load: recommendations at 1/8/32 clients, writes, a 90/10 mix, peak RSS.

    python bench/serve.py --data-dir ../shared/data            # human table
    python bench/serve.py --data-dir ../shared/data --json     # one JSON object
    python bench/serve.py --quick                               # fewer requests, one run

Trains dot-bias (50 factors) on ML-100k, loads the ratings into a fresh SQLite store, starts
`collabkit serve` on 127.0.0.1 (exposure logging on) and drives it with httpx (asyncio) from
this process: the load generator shares the machine's cores with the server. Each phase is
bounded in requests and seconds and runs --runs times; the figures are medians over runs.
Reads come first (random known users), then writes (so read figures are for users the model
knows; writes make later readers fold-in users), then the mix.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def prepare(folder: Path, data_dir: str | None) -> tuple[str, Path, str, list[str], list[str]]:
    """(db url, model folder, writer key, user ids, item ids): a trained model and a full store."""
    sys.path.insert(0, str(SRC))
    from sqlalchemy.orm import Session

    from collabkit import load_movielens, save_model
    from collabkit.serve import migrate, store
    from collabkit.serve.rollout import _train
    from collabkit.serve.security import create_key

    data = load_movielens("100k", data_dir=data_dir, progress=False)
    model = save_model(_train("dot-bias(n_factors=50)", data), folder / "model", items=data.items)
    url = f"sqlite:///{folder / 'collabkit.db'}"
    engine = store.make_engine(url)
    migrate.upgrade(engine)
    f = data.frame
    rows = [
        {"user": str(u), "item": str(i), "value": float(r), "timestamp": float(t)}
        for u, i, r, t in zip(f["user"], f["item"], f["rating"], f["timestamp"])
    ]
    with Session(engine) as s:
        for k in range(0, len(rows), 10_000):
            store.upsert_ratings(s, rows[k : k + 10_000])
        key = create_key(s, "writer")
    engine.dispose()
    users = [str(u) for u in f["user"].unique()]
    items = [str(i) for i in f["item"].unique()]
    return url, model, key, users, items


def start(url: str, model: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    cmd = [sys.executable, "-m", "collabkit.cli", "serve", "--model", str(model), "--db", url,
           "--port", str(port), "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit("the server exited during start-up")
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not become ready in 180 s")


async def drive(
    base: str, make, clients: int, total: int, seconds: float, headers: dict[str, str]
) -> dict[str, float]:
    """Run ``total`` requests (or ``seconds``) from ``clients`` workers; latency percentiles, rates."""
    lat: list[float] = []
    failures, done, units = 0, 0, 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits, headers=headers) as http:

        async def worker(seed: int) -> None:
            nonlocal failures, done, units
            rng = random.Random(seed)
            while done < total and time.perf_counter() < deadline:
                done += 1
                method, path, body, n_units = make(rng)
                t0 = time.perf_counter()
                r = await http.request(method, path, json=body)
                lat.append(time.perf_counter() - t0)
                if r.status_code >= 300:
                    failures += 1
                else:
                    units += n_units

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        elapsed = time.perf_counter() - t0
    ms = np.array(lat) * 1000
    return {
        "requests": len(lat), "failures": failures, "req_per_s": len(lat) / elapsed,
        "units_per_s": units / elapsed, "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)),
    }  # fmt: skip


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data-dir", default=os.environ.get("COLLABKIT_DATA"), help="folder holding ml-100k"
    )
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--runs", type=int, default=3, help="repeats per phase (medians reported)")
    ap.add_argument("--requests", type=int, default=2000, help="request cap per phase")
    ap.add_argument("--seconds", type=float, default=10.0, help="time cap per phase")
    ap.add_argument("--quick", action="store_true", help="1 run, 300 requests, 4 s per phase")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.requests, args.seconds = 1, 300, 4.0
    log = sys.stderr if args.json else sys.stdout
    with tempfile.TemporaryDirectory(prefix="collabkit-bench-") as tmp:
        print("training dot-bias on ML-100k and loading the store ...", file=log, flush=True)
        url, model, key, users, items = prepare(Path(tmp), args.data_dir)
        proc = start(url, model, args.port)
        base = f"http://127.0.0.1:{args.port}"
        auth = {"Authorization": f"Bearer {key}"}
        counter = iter(range(10**9))

        def read(rng):
            return "GET", f"/v1/users/{rng.choice(users)}/recommendations?n=10", None, 1

        def write(rng):
            k = next(counter)
            return (
                "PUT",
                f"/v1/users/bench{k % 5000}/ratings/{rng.choice(items)}",
                {"value": rng.randint(1, 5)},
                1,
            )

        def batch(rng):
            rows = [{"user": f"batch{rng.randint(0, 9999)}", "item": rng.choice(items), "value": rng.randint(1, 5)}
                    for _ in range(1000)]  # fmt: skip
            return "POST", "/v1/ratings", {"ratings": rows}, 1000

        def mixed(rng):
            return write(rng) if rng.random() < 0.1 else read(rng)

        phases = [
            ("recommend, 1 client", read, 1, args.requests),
            ("recommend, 8 clients", read, 8, args.requests),
            ("recommend, 32 clients", read, 32, args.requests),
            ("single writes, 8 clients", write, 8, args.requests),
            ("batches of 1000, 1 client", batch, 1, max(5, args.requests // 100)),
            ("mixed 90/10, 8 clients", mixed, 8, args.requests),
        ]
        results = {}
        try:
            for name, make, clients, total in phases:
                runs = [
                    asyncio.run(drive(base, make, clients, total, args.seconds, auth))
                    for _ in range(args.runs)
                ]
                results[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                print(f"  {name}: {results[name]['req_per_s']:.0f} req/s", file=log, flush=True)
            rss = peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    report = {
        "phases": results, "server_peak_rss_mb": rss, "runs": args.runs,
        "requests_cap": args.requests, "seconds_cap": args.seconds, "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
    }  # fmt: skip
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"\n{'phase':28} {'req/s':>8} {'ratings/s':>10} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'fail':>5}"
    )
    for name, r in results.items():
        ratings = f"{r['units_per_s']:.0f}" if "write" in name or "batch" in name else ""
        print(f"{name:28} {r['req_per_s']:8.0f} {ratings:>10} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} "
              f"{r['p99_ms']:8.1f} {r['failures']:5.0f}")  # fmt: skip
    print(
        f"server peak RSS {rss:.0f} MB; load average {report['load_average']:.1f} on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
