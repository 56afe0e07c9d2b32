"""Evaluation: rating and ranking metrics, cross-validation and model comparison."""

from collabkit.evaluate.compare import compare, evaluate_model
from collabkit.evaluate.crossval import CrossValidation, canonical_folds, cross_validate
from collabkit.evaluate.metrics import (
    hits_matrix,
    per_user_ranking_metrics,
    ranking_metrics,
    rating_metrics,
)
from collabkit.evaluate.ranking import evaluate_ranking
from collabkit.evaluate.rating import evaluate_ratings

__all__ = [
    "CrossValidation", "canonical_folds", "compare", "cross_validate", "evaluate_model",
    "evaluate_ranking", "evaluate_ratings", "hits_matrix", "per_user_ranking_metrics",
    "ranking_metrics", "rating_metrics",
]
