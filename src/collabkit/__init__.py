"""collabkit: collaborative filtering you can train, explain and serve."""

from collabkit.checkpoint import load_model, save_model
from collabkit.core.loop import History, fit_one_cycle
from collabkit.data.implicit import to_implicit
from collabkit.data.interactions import Ratings
from collabkit.data.movielens import canonical_split, load_movielens
from collabkit.data.readers import RatingsFormatError, read_ratings
from collabkit.data.split import kfold, random_split, temporal_split, user_split
from collabkit.data.vocab import UnknownIdError, Vocab
from collabkit.evaluate import compare, evaluate_ranking, evaluate_ratings
from collabkit.models.base import CapabilityError, CollabModel, sigmoid_range
from collabkit.models.dot import BiasOnly, DotProduct, DotProductBias, GlobalMean
from collabkit.models.hybrid import Hybrid
from collabkit.models.implicit import ALS, BPR, EASE, MostPopular
from collabkit.models.neural import EmbeddingNN
from collabkit.recommend import recommend, recommend_new_users
from collabkit.train import build_model
from collabkit.train.lr_find import lr_find

__all__ = [
    "ALS", "BPR", "EASE", "BiasOnly", "CapabilityError", "CollabModel", "DotProduct",
    "DotProductBias", "EmbeddingNN", "GlobalMean", "History", "Hybrid", "MostPopular", "Ratings",
    "RatingsFormatError", "UnknownIdError", "Vocab", "build_model", "canonical_split", "compare",
    "evaluate_ranking", "evaluate_ratings", "fit_one_cycle", "kfold", "load_model",
    "load_movielens", "lr_find", "random_split", "read_ratings", "recommend",
    "recommend_new_users", "save_model", "sigmoid_range", "temporal_split", "to_implicit",
    "user_split",
]  # fmt: skip
