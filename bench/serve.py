"""The service under load, measured with wrk: known users, fold-in users, new users, writes, a mix.

    python bench/serve.py --data-dir ../shared/data            # human table
    python bench/serve.py --data-dir ../shared/data --json     # one JSON object
    python bench/serve.py --data-dir ../shared/data --epinions # add the 296 k-item Epinions model
    python bench/serve.py --quick                               # 3 s phases, one run
    python bench/serve.py --db postgresql+psycopg://postgres@127.0.0.1:5432/bench --only writes --only batches
                                      # the write phases against a PostgreSQL store (an empty database)

Trains dot-bias (the chapter's recipe, all of ML-100k) and loads its ratings into a fresh SQLite
store, starts `collabkit serve --workers W` on 127.0.0.1 and drives it with wrk (Debian's `wrk`,
a Lua script per phase spreading requests over random users), which runs on the same 2 cores as
the server. Without wrk the Python generator below runs instead, and the output says so. Every
phase is bounded in time and connections; its figures are medians over --runs runs.

Phases: known users (the model's own, 1/8/32 connections); fold-in users (rated after the model
was trained: folded in per request); new users from onboarding answers (POST /v1/users); single
acknowledged writes (PUT, SQLite synchronous=FULL); batches of 1,000; a 90/10 mix of reads and
writes; and with --epinions, known users of a dot-bias model of Epinions' 296 k products. Each
reports req/s, p50/p95/p99 ms and failures (non-2xx or socket errors); the peak RSS and the
proportional set size (PSS: shared pages counted once) of all server processes are reported.
With --startup only start-up is measured: the server is started (its engine cache built), its
ready time and memory read, then stopped and started again (the cache reused).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
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
N_FOLD = 500  # users who rated after the model was trained
FOLD_RATINGS = 20  # ratings each of them has

#: a wrk script: ``request`` is filled per phase; ``done`` prints one JSON line of figures
#: (failures: socket errors and statuses >= 400, which wrk counts itself)
LUA_DONE = """
function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout + summary.errors.status
  io.write(string.format('{"requests": %d, "seconds": %f, "errors": %d, "p50_ms": %f, "p95_ms": %f, "p99_ms": %f}\\n',
    summary.requests, summary.duration / 1e6, errors, latency:percentile(50) / 1000,
    latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


def lua(request: str, setup: str = "") -> str:
    return f"math.randomseed(os.time())\n{setup}\n{LUA_DONE}\nrequest = function()\n{request}\nend\n"


def prepare(folder: Path, data_dir: str | None, dataset: str, spec: str, url: str | None = None) -> dict:
    """A trained model, a store holding its ratings, a writer key: (url, model, key, users, items).
    The store is ``url`` (an empty database) or a fresh SQLite file in ``folder``."""
    sys.path.insert(0, str(SRC))
    from sqlalchemy.orm import Session

    from collabkit import load_movielens, read_ratings, save_model
    from collabkit.serve import migrate, store
    from collabkit.serve.rollout import _train
    from collabkit.serve.security import create_key

    if dataset == "ml-100k":
        data = load_movielens("100k", data_dir=data_dir, progress=False)
    else:
        data = read_ratings(Path(data_dir) / "epinions" / "ratings.tsv", duplicates="last")
    t0 = time.perf_counter()
    model = save_model(_train(spec, data), folder / "model", items=data.items)
    fit = time.perf_counter() - t0
    url = url or f"sqlite:///{folder / 'collabkit.db'}"
    engine = store.make_engine(url)
    migrate.upgrade(engine)
    f = data.frame
    ts = f["timestamp"] if "timestamp" in f.columns else np.zeros(len(f))
    rows = [{"user": str(u), "item": str(i), "value": float(r), "timestamp": float(t)}
            for u, i, r, t in zip(f["user"], f["item"], f["rating"], ts)]  # fmt: skip
    with Session(engine) as s:
        for k in range(0, len(rows), 20_000):
            store.upsert_ratings(s, rows[k : k + 20_000])
        key = create_key(s, "writer")
    engine.dispose()
    return {"url": url, "model": model, "key": key, "users": [str(u) for u in f["user"].unique()],
            "items": [str(i) for i in f["item"].unique()], "fit_seconds": fit}  # fmt: skip


def add_fold_users(url: str, items: list[str], seed: int = 0) -> list[str]:
    """N_FOLD users with FOLD_RATINGS ratings each, written now (after the model's training)."""
    from sqlalchemy.orm import Session

    from collabkit.serve import store

    rng = random.Random(seed)
    engine = store.make_engine(url)
    users = [f"fold{k}" for k in range(N_FOLD)]
    rows = [{"user": u, "item": i, "value": float(rng.randint(1, 5))} for u in users for i in rng.sample(items, FOLD_RATINGS)]
    with Session(engine) as s:
        store.upsert_ratings(s, rows)
    engine.dispose()
    return users


def start(url: str, model: Path, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    cmd = [sys.executable, "-m", "collabkit.cli", "serve", "--model", str(model), "--db", url,
           "--port", str(port), "--workers", str(workers), "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit("the server exited during start-up")
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not become ready in 600 s")


def server_memory(pid: int) -> tuple[float, float]:
    """(sum of peak RSS, sum of current PSS) in MB over the server and its worker processes."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            todo += [int(c) for c in task.read_text().split()]
    peak = pss = 0.0
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
            peak += int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1]) / 1024
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
            pss += int(next(x for x in rollup.splitlines() if x.startswith("Pss:")).split()[1]) / 1024
        except (OSError, StopIteration):
            pass
    return peak, pss


def startup(ctx: dict, port: int, workers: int) -> dict[str, float]:
    """Ready seconds, peak RSS and PSS (MB, all server processes) of a first start and a restart."""
    out = {}
    for run in ("first", "restart"):
        t0 = time.perf_counter()
        proc = start(ctx["url"], ctx["model"], port, workers)
        out[f"{run}_ready_seconds"] = round(time.perf_counter() - t0, 1)
        peak, pss = server_memory(proc.pid)
        out[f"{run}_peak_rss_mb"], out[f"{run}_pss_mb"] = round(peak), round(pss)
        proc.terminate()
        proc.wait(timeout=60)
    return out


def wrk(base: str, script: str, connections: int, seconds: float) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        threads = min(2, connections)
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", f.name, base],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(f.name)
    got = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    failures = got["errors"]
    return {"req_per_s": got["requests"] / got["seconds"], "p50_ms": got["p50_ms"], "p95_ms": got["p95_ms"],
            "p99_ms": got["p99_ms"], "failures": failures, "requests": got["requests"]}  # fmt: skip


async def python_drive(base: str, make, clients: int, seconds: float, headers: dict[str, str]) -> dict[str, float]:
    """The fallback generator (httpx, asyncio, in this process): same figures as ``wrk``."""
    lat: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits, headers=headers) as http:

        async def worker(seed: int) -> None:
            nonlocal failures
            rng = random.Random(seed)
            while time.perf_counter() < deadline:
                method, path, body = make(rng)
                t0 = time.perf_counter()
                r = await http.request(method, path, content=body)
                lat.append(time.perf_counter() - t0)
                failures += r.status_code >= 300

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        elapsed = time.perf_counter() - t0
    ms = np.array(lat) * 1000
    return {"req_per_s": len(lat) / elapsed, "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "failures": failures, "requests": len(lat)}  # fmt: skip


def phases(ctx: dict, fold: list[str]) -> list[tuple[str, int, str, object, int]]:
    """(name, connections, wrk script, python request maker, ratings per request)."""
    key = ctx["key"]
    auth = f'wrk.headers["Authorization"] = "Bearer {key}"\nwrk.headers["Content-Type"] = "application/json"'
    users = "users = {" + ",".join(json.dumps(u) for u in ctx["users"]) + "}"
    folds = "folds = {" + ",".join(json.dumps(u) for u in fold) + "}"
    items = "items = {" + ",".join(json.dumps(i) for i in ctx["items"][:2000]) + "}"
    known = lua('return wrk.format("GET", "/v1/users/" .. users[math.random(#users)] .. "/recommendations?n=10")', users)
    folded = lua('return wrk.format("GET", "/v1/users/" .. folds[math.random(#folds)] .. "/recommendations?n=10")', folds)
    new = lua(
        'counter = counter + 1\n'
        'local answers = {}\n'
        'local first = math.random(#items - 5)  -- five different items: the API refuses an item answered twice\n'
        'for k = 1, 5 do answers[k] = string.format(\'{"item": "%s", "rating": %d}\', items[first + k], math.random(1, 5)) end\n'
        'local body = string.format(\'{"user": "new%s-%d", "answers": [%s], "n": 10}\', id, counter, table.concat(answers, ","))\n'
        'return wrk.format("POST", "/v1/users", nil, body)',
        f"{auth}\n{items}\ncounter = 0\nthread_no = 0\nrun = os.time()\n"
        "function setup(thread) thread_no = thread_no + 1; thread:set('id', run .. '-' .. thread_no) end",
    )
    single = lua(
        'return wrk.format("PUT", "/v1/users/w" .. math.random(1, 5000) .. "/ratings/" .. items[math.random(#items)], nil, '
        '\'{"value": \' .. math.random(1, 5) .. \'}\')',
        f"{auth}\n{items}",
    )
    rows = ",".join(f'{{"user": "batch{k % 997}", "item": "{ctx["items"][k % len(ctx["items"])]}", "value": {1 + k % 5}}}' for k in range(1000))
    batch = lua(f"return wrk.format(\"POST\", \"/v1/ratings\", nil, '{{\"ratings\": [{rows}]}}')", auth)
    mixed = lua(
        'if math.random() < 0.1 then\n'
        '  return wrk.format("PUT", "/v1/users/m" .. math.random(1, 5000) .. "/ratings/" .. items[math.random(#items)], nil, \'{"value": 4}\')\n'
        'end\n'
        'return wrk.format("GET", "/v1/users/" .. users[math.random(#users)] .. "/recommendations?n=10")',
        f"{auth}\n{items}\n{users}",
    )

    def get(pool):
        return lambda rng: ("GET", f"/v1/users/{rng.choice(pool)}/recommendations?n=10", None)

    def put(rng):
        return "PUT", f"/v1/users/w{rng.randint(1, 5000)}/ratings/{rng.choice(ctx['items'])}", json.dumps({"value": rng.randint(1, 5)})

    def post_user(rng):
        answers = [{"item": i, "rating": rng.randint(1, 5)} for i in rng.sample(ctx["items"], 5)]
        return "POST", "/v1/users", json.dumps({"user": f"py{rng.random()}", "answers": answers})

    def post_batch(rng):
        rows = [{"user": f"batch{rng.randint(0, 996)}", "item": rng.choice(ctx["items"]), "value": rng.randint(1, 5)} for _ in range(1000)]
        return "POST", "/v1/ratings", json.dumps({"ratings": rows})

    def mix(rng):
        return put(rng) if rng.random() < 0.1 else get(ctx["users"])(rng)

    return [
        ("known users, 1 connection", 1, known, get(ctx["users"]), 0),
        ("known users, 8 connections", 8, known, get(ctx["users"]), 0),
        ("known users, 32 connections", 32, known, get(ctx["users"]), 0),
        ("fold-in users, 32 connections", 32, folded, get(fold), 0),
        ("new users (5 answers), 32 connections", 32, new, post_user, 0),
        ("single writes, 32 connections", 32, single, put, 1),
        ("batches of 1,000, 2 connections", 2, batch, post_batch, 1000),
        ("mixed 90/10, 32 connections", 32, mixed, mix, 0),
    ]


def run_phase(base: str, use_wrk: bool, ctx: dict, phase: tuple, seconds: float, runs: int) -> dict:
    _name, connections, script, make, per_request = phase
    got = []
    for _ in range(runs):
        if use_wrk:
            got.append(wrk(base, script, connections, seconds))
        else:
            got.append(asyncio.run(python_drive(base, make, connections, seconds, {"Authorization": f"Bearer {ctx['key']}", "Content-Type": "application/json"})))
    out = {k: statistics.median(r[k] for r in got) for k in got[0]}
    if per_request:
        out["ratings_per_s"] = out["req_per_s"] * per_request
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("COLLABKIT_DATA"), help="folder holding ml-100k (and epinions)")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="server worker processes")
    ap.add_argument("--runs", type=int, default=3, help="repeats per phase (medians reported)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each phase's run")
    ap.add_argument("--epinions", action="store_true", help="also the Epinions model (296 k items)")
    ap.add_argument("--python", action="store_true", help="use the Python generator even when wrk is there")
    ap.add_argument("--quick", action="store_true", help="1 run of 3 s per phase")
    ap.add_argument("--db", help="the store's URL, an empty database (default: a fresh SQLite file)")
    ap.add_argument("--only", action="append", default=[], help="run the phases whose name has this word (repeatable)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--startup", action="store_true", help="only start-up: ready time and memory, cold and restarted")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.seconds = 1, 3.0
    if args.db and args.epinions:
        ap.error("--db holds one dataset's store: run --epinions without --db")
    log = sys.stderr if args.json else sys.stdout
    use_wrk = shutil.which("wrk") is not None and not args.python
    generator = "wrk" if use_wrk else "python (httpx; wrk not found)" if not args.python else "python (httpx)"
    print(f"load generator: {generator}", file=log, flush=True)
    results: dict[str, dict] = {}
    store_kind = args.db.split(":", 1)[0].split("+", 1)[0] if args.db else "sqlite"
    report: dict = {"generator": generator, "workers": args.workers, "runs": args.runs, "seconds": args.seconds,
                    "store": store_kind, "cpus": os.cpu_count(), "load_average_before": os.getloadavg()[0]}  # fmt: skip
    sets = [("ml-100k", "dot-bias(n_factors=50, epochs=5, lr_max=5e-3, wd=0.1)")]
    if args.epinions:
        sets.append(("epinions", "dot-bias(n_factors=50, epochs=5, lr_max=5e-3, wd=0.1)"))
    for dataset, spec in sets:
        with tempfile.TemporaryDirectory(prefix="collabkit-bench-") as tmp:
            print(f"{dataset}: training {spec} and loading the store ...", file=log, flush=True)
            ctx = prepare(Path(tmp), args.data_dir, dataset, spec, args.db)
            if args.startup:
                report[dataset] = startup(ctx, args.port, args.workers)
                print(f"  {dataset}: {report[dataset]}", file=log, flush=True)
                continue
            t0 = time.perf_counter()
            proc = start(ctx["url"], ctx["model"], args.port, args.workers)
            report[f"{dataset}_ready_seconds"] = round(time.perf_counter() - t0, 1)
            fold = add_fold_users(ctx["url"], ctx["items"])
            base = f"http://127.0.0.1:{args.port}"
            try:
                chosen = phases(ctx, fold)
                if dataset != "ml-100k":  # the large catalogue: known users, one and 32 connections
                    chosen = [p for p in chosen if p[0].startswith("known users") and p[1] in (1, 32)]
                chosen = [p for p in chosen if not args.only or any(w in p[0] for w in args.only)]
                for phase in chosen:
                    name = f"{dataset}: {phase[0]}"
                    results[name] = run_phase(base, use_wrk, ctx, phase, args.seconds, args.runs)
                    r = results[name]
                    print(f"  {name}: {r['req_per_s']:.0f} req/s, p99 {r['p99_ms']:.1f} ms, {r['failures']:.0f} failed", file=log, flush=True)
                peak, pss = server_memory(proc.pid)
                report[f"{dataset}_server_peak_rss_mb"], report[f"{dataset}_server_pss_mb"] = round(peak), round(pss)
            finally:
                proc.terminate()
                proc.wait(timeout=60)
    report["phases"] = results
    report["load_average_after"] = os.getloadavg()[0]
    if args.json or args.startup:
        print(json.dumps(report))
        return
    print(f"\n{'phase':50} {'req/s':>8} {'ratings/s':>10} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'fail':>5}")
    for name, r in results.items():
        ratings = f"{r['ratings_per_s']:.0f}" if "ratings_per_s" in r else ""
        print(f"{name:50} {r['req_per_s']:8.0f} {ratings:>10} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {r['p99_ms']:8.1f} {r['failures']:5.0f}")
    for dataset, _ in sets:
        print(f"{dataset}: server ready in {report[f'{dataset}_ready_seconds']} s; peak RSS of all server processes "
              f"{report[f'{dataset}_server_peak_rss_mb']} MB (PSS {report[f'{dataset}_server_pss_mb']} MB)")
    print(f"generator {generator}; {args.workers} workers; {store_kind} store; load average {report['load_average_before']:.1f} before, "
          f"{report['load_average_after']:.1f} after, on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
