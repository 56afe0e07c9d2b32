"""`collabkit simulate`: run the feedback loop on a world fitted to your ratings, with and without mitigations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from collabkit.cli.common import Json, app, consoles, fail, print_json
from collabkit.cli.source import DataSource, with_source


@app.command("simulate")
@with_source
def simulate_cmd(
    source: DataSource,
    model: Annotated[
        str | None,
        typer.Option(
            help="System under test, a model spec, e.g. 'dot-bias(n_factors=20, epochs=3)'."
        ),
    ] = None,
    rounds: Annotated[
        int, typer.Option(min=1, help="Rounds of retrain -> recommend -> consume.")
    ] = 20,
    n: Annotated[int, typer.Option("-n", "--n", min=1, help="Length of each list.")] = 10,
    mitigation: Annotated[
        list[str] | None,
        typer.Option(
            help="Repeatable: none, cap, ipw, calibrate, popularity, explore, or e.g. 'cap=40,calibrate=0.5'. Default: none."
        ),
    ] = None,
    world: Annotated[
        str | None,
        typer.Option(help="World settings, e.g. 'minority_share=0.1, recruit_rate=0.2' (any field of collabkit.simulate.WorldConfig)."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for rounds.csv (every round of every run), loop.png and loop.html."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Simulate the feedback loop: a ground-truth world fitted to the ratings, the model retrained
    each round on what its own recommendations made users rate, and the exposure metrics per round.
    """
    from dataclasses import fields, replace

    import pandas as pd

    from collabkit.files import atomic_write_bytes
    from collabkit.simulate import WorldConfig, fit_world, parse_mitigation, simulate
    from collabkit.simulate.loop import DEFAULT_SPEC
    from collabkit.simulate.report import summarise, write_html, write_png
    from collabkit.train.build import parse_options

    out, log = consoles(as_json)
    try:
        mitigations = [parse_mitigation(m) for m in (mitigation or ["none"])]
    except ValueError as e:
        fail(str(e))
    try:
        config = replace(WorldConfig(), **parse_options(world or ""))
    except (ValueError, TypeError) as e:
        fail(f"--world: {e}; its fields: {', '.join(f.name for f in fields(WorldConfig))}")
    if source.dataset is None and source.ratings is None:  # the chapter's data by default
        source = replace(source, dataset="ml-100k")
    seed = 0 if source.seed is None else source.seed
    try:
        data = source.load()
        log.print(f"fitting the world to {data!r}")
        world = fit_world(data, config, seed=seed)
    except (ValueError, OSError, KeyError) as e:  # OSError: missing files, failed downloads
        fail(str(e))
    spec = model or DEFAULT_SPEC
    runs = {}
    for mit in mitigations:
        log.print(f"simulating {rounds} rounds of {spec} with mitigation {mit.name}")
        try:
            runs[mit.name] = simulate(
                world, spec, rounds=rounds, n=n, mitigation=mit, seed=seed
            ).metrics
        except ValueError as e:
            fail(str(e))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_png(runs, out_dir / "loop.png")
        write_html(runs, out_dir / "loop.html", title=f"Feedback loop: {spec} on {data.name}")
        frame = pd.concat([f.assign(mitigation=name) for name, f in runs.items()], ignore_index=True)
        atomic_write_bytes(out_dir / "rounds.csv", frame.to_csv(index=False).encode("utf-8"))
    summaries = {name: summarise(frame) for name, frame in runs.items()}
    if as_json:
        print_json(
            {
                "model": spec,
                "rounds": rounds,
                "seed": seed,
                "runs": {
                    name: {**summaries[name], "per_round": frame.to_dict(orient="records")}
                    for name, frame in runs.items()
                },
            }
        )
        return
    table = Table(title=f"{spec} on {data.name}: first 3 rounds -> last 3 rounds")
    shown = {
        "fav_share_majority": "fav share of majority lists", "gini": "exposure gini",
        "gini_majority": "gini, majority lists", "top1_share_majority": "top-1% share, majority lists",
        "jaccard": "jaccard", "utility_majority": "majority utility",
        "utility_minority": "minority utility", "rmse": "rmse",
    }  # fmt: skip
    table.add_column("mitigation")
    for label in shown.values():
        table.add_column(label, justify="right")
    for name, s in summaries.items():
        table.add_row(name, *(f"{s[f'{m}_start']:.3f} -> {s[f'{m}_end']:.3f}" for m in shown))
    out.print(table)
