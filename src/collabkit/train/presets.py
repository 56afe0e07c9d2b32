"""Named recipes: fixed model specs (and weights, for an ensemble) that ``build_model`` accepts by name.

A preset is a FIXED recipe. Its members, hyper-parameters and ensemble weights were chosen on
validation ratings carved out of the training part only (ML-100k u1.base and the chapter's
random-split train, ``bench/accuracy.py --tune``), never on a test split; the preset is then
retrained on the whole training part it is given.

    chapter  the fastai chapter: dot-bias, 50 factors, 5 epochs, lr 5e-3, wd 0.1 (dot-bias's defaults)
    best     a weighted average of Bayesian MF (Gibbs-sampled), item-based AutoRec and the hybrid
             model (ids + user/item metadata, SGD-trained), which err differently: ~0.013 RMSE
             better than the best of them alone on validation

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


PRESETS: dict[str, Preset] = {
    "chapter": Preset(
        "fastai chapter: DotProductBias, 50 factors, 5 epochs, lr 5e-3, wd 0.1",
        ("dot-bias(n_factors=50, epochs=5, lr_max=5e-3, wd=0.1)",),
    ),
    # bench/accuracy.py --tune: the blend with the lowest mean validation RMSE (0.8805; the best
    # pair without the hybrid: 0.8846). The hybrid uses whatever metadata the data has; with
    # none it is dot-bias with id dropout.
    "best": Preset(
        "Bayesian MF (230 kept sweeps) 0.25 + I-AutoRec (reg 40) 0.5 + hybrid (metadata) 0.25",
        (
            "bpmf(n_factors=10, samples=230, burn_in=20)",
            "autorec(n_factors=500, reg=40.0, epochs=300, lr=4e-3)",
            "hybrid(n_factors=50)",
        ),
        (0.25, 0.5, 0.25),
    ),
}
