"""Evaluation: rating and ranking metrics, cross-validation and model comparison."""

from collabkit.evaluate.metrics import hits_matrix, per_user_ranking_metrics, ranking_metrics, rating_metrics
from collabkit.evaluate.rating import evaluate_ratings

__all__ = ["evaluate_ratings", "hits_matrix", "per_user_ranking_metrics", "ranking_metrics", "rating_metrics"]
