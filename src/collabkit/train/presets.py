"""Named recipes: fixed model specs (and weights, for an ensemble) that ``build_model`` accepts by name.

A preset is a FIXED recipe. ``best``'s members, hyper-parameters and ensemble weights were
chosen on a validation tenth of ML-100k u1.base alone (``bench/accuracy.py --tune --split u1``),
so its u1.test figures are honest; the chapter's random split's test part overlaps u1.base, so
figures on that split are not independent of the tuning. The preset is retrained on the whole
training part it is given. ``auto`` (train.auto) tunes on the user's own data instead.

    chapter  the fastai chapter: dot-bias, 50 factors, 5 epochs, lr 5e-3, wd 0.1 (dot-bias's defaults)
    best     a weighted average of Bayesian MF (Gibbs-sampled), item-based AutoRec and the hybrid
             model (ids + user/item metadata, SGD-trained), which err differently: ~0.013 RMSE
             better than the best of them alone on validation; with timestamps, time offsets
             (``models.timeshift``) of a kernel width and shrinkage tuned the same way

Single kinds need no preset: ``bpmf`` and ``autorec`` with their defaults are those recipes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """A recipe: member specs (as ``build_model`` reads them) and their weights in the average."""

    description: str
    members: tuple[str, ...]
    weights: tuple[float, ...] = ()  # one per member; () for a single member
    # (kernel width in seconds, shrinkage), both > 0: an ensemble's time offsets (``models.timeshift``)
    times: tuple[float, float] = (0.0, 0.0)


PRESETS: dict[str, Preset] = {
    "chapter": Preset(
        "fastai chapter: DotProductBias, 50 factors, 5 epochs, lr 5e-3, wd 0.1",
        ("dot-bias(n_factors=50, epochs=5, lr_max=5e-3, wd=0.1)",),
    ),
    # bench/accuracy.py --tune --split u1: the blend with the lowest validation RMSE on u1.base
    # (0.8802; the previous 10-factor, 230-sample Bayesian MF: 0.8803; the best pair without the
    # hybrid: 0.8828). The hybrid uses whatever metadata the data has; with none it is dot-bias
    # with id dropout.
    "best": Preset(
        "Bayesian MF (20 factors) 0.25 + I-AutoRec (reg 40) 0.5 + hybrid (metadata) 0.25",
        (
            "bpmf(n_factors=20, samples=130, burn_in=20)",
            "autorec(n_factors=500, reg=40.0, epochs=300, lr=4e-3)",
            "hybrid(n_factors=50)",
        ),
        (0.25, 0.5, 0.25),
        # bench/accuracy.py --tune-times: validation RMSE 0.8806 without time offsets, 0.8643 with
        # a kernel width of 60 s and shrinkage 3 (120 s: 0.8644; a day: 0.8734)
        times=(60.0, 3.0),
    ),
}
