"""Interpretation: what a trained model learned (biases, the item map, neighbours) and a report."""

from collabkit.interpret.biases import BiasVsMean, bias_table, bias_vs_mean
from collabkit.interpret.pca import ItemPCA, item_pca, map_figure, save_html, save_png
from collabkit.interpret.report import write_report
from collabkit.interpret.similar import (
    TitleNotFoundError,
    factors,
    find_item,
    similar_items,
    similar_users,
)

__all__ = [
    "BiasVsMean",
    "ItemPCA",
    "TitleNotFoundError",
    "bias_table",
    "bias_vs_mean",
    "factors",
    "find_item",
    "item_pca",
    "map_figure",
    "save_html",
    "save_png",
    "similar_items",
    "similar_users",
    "write_report",
]
