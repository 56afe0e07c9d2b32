"""Evaluation: rating, ranking and exposure metrics with intervals, paired tests, groups, the
held-out-user protocol, cross-validation and model comparison."""

from collabkit.evaluate.compare import Comparison, compare, compare_heldout, evaluate_model
from collabkit.evaluate.crossval import CrossValidation, canonical_folds, cross_validate
from collabkit.evaluate.metrics import (
    hits_matrix,
    per_user_ranking_metrics,
    ranking_metrics,
    rating_metrics,
)
from collabkit.evaluate.ranking import evaluate_ranking
from collabkit.evaluate.rating import evaluate_ratings
from collabkit.evaluate.scores import Outcome, outcome
from collabkit.evaluate.uncertainty import PerUser, intervals, paired

__all__ = [
    "Comparison", "CrossValidation", "Outcome", "PerUser", "canonical_folds", "compare",
    "compare_heldout", "cross_validate", "evaluate_model", "evaluate_ranking", "evaluate_ratings",
    "hits_matrix", "intervals", "outcome", "paired", "per_user_ranking_metrics", "ranking_metrics",
    "rating_metrics",
]
