"""Recommendations: batched top-N with reasons, fold-in of new users, onboarding questions."""

from collabkit.recommend.foldin import fold_in_frame
from collabkit.recommend.onboard import Questionnaire
from collabkit.recommend.recommend import explain_items, recommend, recommend_new_users
from collabkit.recommend.topn import rated_csr, seen_csr, top_n

__all__ = [
    "Questionnaire",
    "explain_items",
    "fold_in_frame",
    "rated_csr",
    "recommend",
    "recommend_new_users",
    "seen_csr",
    "top_n",
]
