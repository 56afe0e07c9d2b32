"""Named training recipes: ``fit_preset("best", train)`` -> (model, History).

A preset is a FIXED recipe: model kinds, hyper-parameters and ensemble weights written below.
They were chosen on validation ratings carved out of the training part only (ML-100k u1.base and
the chapter's random-split train, ``bench/accuracy.py --tune``), never on a test split; the
preset is then retrained on the whole training part it is given.

    chapter  the fastai chapter: DotProductBias, 50 factors, 5 epochs, lr 5e-3, wd 0.1
    best     a weighted average of Bayesian MF (Gibbs-sampled), item-based AutoRec and the
             hybrid model (ids + user/item metadata, SGD-trained), which err differently:
             ~0.013 RMSE better than the best of them alone on validation
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from rich.console import Console

from collabkit.data.interactions import Ratings
from collabkit.evaluate import evaluate_ratings
from collabkit.models.autorec import AutoRec
from collabkit.models.base import CollabModel, get_model_class
from collabkit.models.bayes import BayesianMF
from collabkit.models.dot import DotProductBias
from collabkit.models.ensemble import Ensemble
from collabkit.models.svdpp import SVDpp
from collabkit.train.loop import History, fit_one_cycle

# importing a model class registers its kind, so fit_preset and load_model can find it
MODEL_CLASSES = (AutoRec, BayesianMF, DotProductBias, Ensemble, SVDpp)


@dataclass(frozen=True)
class Member:
    """One model of a recipe: its kind, its config, how to train it, its weight in the average."""

    kind: str
    config: dict[str, Any] = field(default_factory=dict)  # passed to Model.from_data
    # fit_one_cycle options for gradient-trained kinds; kinds with their own .fit() ignore them
    train: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0


@dataclass(frozen=True)
class Preset:
    description: str
    members: tuple[Member, ...]


BPMF = Member("bpmf", {"n_factors": 10, "samples": 130, "burn_in": 20})
AUTOREC = Member("autorec", {"n_factors": 500, "reg": 60.0, "epochs": 300, "lr": 4e-3})
CHAPTER = {"epochs": 5, "lr_max": 5e-3, "wd": 0.1}

PRESETS: dict[str, Preset] = {
    "chapter": Preset(
        "fastai chapter: DotProductBias, 50 factors, 5 epochs, lr 5e-3, wd 0.1",
        (Member("dot-bias", {"n_factors": 50}, CHAPTER),),
    ),
    "bpmf": Preset("Bayesian MF: 10 factors, 20 burn-in + 130 kept Gibbs sweeps", (BPMF,)),
    "autorec": Preset(
        "I-AutoRec: 500 hidden units, reg 60, 300 full-batch Adam epochs", (AUTOREC,)
    ),
    # bench/accuracy.py --tune: the blend with the lowest mean validation RMSE (0.8805; the best
    # pair without the hybrid: 0.8846). The hybrid uses whatever metadata the data has; with
    # none it is dot-bias with id dropout.
    "best": Preset(
        "Bayesian MF (230 kept sweeps) 0.25 + I-AutoRec (reg 40) 0.5 + hybrid (metadata) 0.25",
        (
            replace(BPMF, config={**BPMF.config, "samples": 230}, weight=0.25),
            replace(AUTOREC, config={**AUTOREC.config, "reg": 40.0}, weight=0.5),
            Member("hybrid", {"n_factors": 50}, CHAPTER, weight=0.25),
        ),
    ),
}


def fit_preset(
    name: str | Preset,
    train: Ratings,
    valid: Ratings | None = None,
    console: Console | None = None,
    seed: int = 42,
) -> tuple[CollabModel, History]:
    """Train the recipe ``name`` (a key of PRESETS, or a Preset) on ``train``.

    Returns the model (an Ensemble when the recipe has several members) and a History with one
    row per member (epoch = member index, its final train_loss, its valid_loss on ``valid`` if
    given, its fit time) and, for an ensemble, a last row with the ensemble's own losses.
    """
    if isinstance(name, Preset):
        preset = name
    elif name in PRESETS:
        preset = PRESETS[name]
    else:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    t_start = time.perf_counter()
    history = History()
    members = []
    for k, spec in enumerate(preset.members):
        t0 = time.perf_counter()
        model = get_model_class(spec.kind).from_data(train, **{"seed": seed + k, **spec.config})
        if hasattr(model, "fit"):
            h = model.fit(train, console=console)
        else:
            h = fit_one_cycle(model, train, **{"seed": seed + k, "progress": False, **spec.train})
        row = {
            "epoch": k,
            "train_loss": h.final.get("train_loss", float("nan")),
            "time": time.perf_counter() - t0,
        }
        if valid is not None and len(valid):
            row["valid_loss"] = _mse(model, valid)
        history.rows.append(row)
        members.append(model)
        if console is not None:
            v = f", valid rmse {row['valid_loss'] ** 0.5:.4f}" if "valid_loss" in row else ""
            console.print(
                f"member {k + 1}/{len(preset.members)} {spec.kind}: {row['time']:.1f}s{v}"
            )
    if len(members) == 1:
        model = members[0]
    else:
        model = Ensemble.of(members, [m.weight for m in preset.members])
        row = {"epoch": len(members), "train_loss": _mse(model, train), "time": 0.0}
        if valid is not None and len(valid):
            row["valid_loss"] = _mse(model, valid)
        history.rows.append(row)
    history.fit_seconds = time.perf_counter() - t_start
    model.eval()
    return model, history


def _mse(model: CollabModel, ratings: Ratings) -> float:
    return evaluate_ratings(model, ratings)["mse"]
