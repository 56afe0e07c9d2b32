"""Recommendations: batched top-N with reasons, fold-in of new users, onboarding questions."""

from collabkit.recommend.foldin import UserPrior, average_taste, fold_in, fold_in_frame, user_prior
from collabkit.recommend.onboard import Questionnaire
from collabkit.recommend.recommend import explain_items, recommend, recommend_new_users
from collabkit.recommend.topn import rated_csr, score_reprs, seen_csr, top_n

__all__ = [
    "Questionnaire",
    "UserPrior",
    "average_taste",
    "explain_items",
    "fold_in",
    "fold_in_frame",
    "rated_csr",
    "recommend",
    "recommend_new_users",
    "score_reprs",
    "seen_csr",
    "top_n",
    "user_prior",
]
