"""collabkit: collaborative filtering you can train, explain and serve."""

from collabkit.checkpoint import load_model, save_model
from collabkit.data.interactions import Ratings
from collabkit.data.movielens import canonical_split, load_movielens
from collabkit.data.readers import RatingsFormatError, read_ratings
from collabkit.data.split import kfold, random_split, temporal_split, user_split
from collabkit.data.vocab import UnknownIdError, Vocab
from collabkit.evaluate import evaluate_ratings
from collabkit.models.base import CollabModel, sigmoid_range
from collabkit.models.dot import BiasOnly, DotProduct, DotProductBias, GlobalMean
from collabkit.models.hybrid import Hybrid
from collabkit.models.neural import EmbeddingNN
from collabkit.train.loop import History, fit_one_cycle
from collabkit.train.lr_find import lr_find

__all__ = [
    "BiasOnly", "CollabModel", "DotProduct", "DotProductBias", "EmbeddingNN", "GlobalMean",
    "History", "Hybrid", "Ratings", "RatingsFormatError", "UnknownIdError", "Vocab", "canonical_split",
    "evaluate_ratings", "fit_one_cycle", "kfold", "load_model", "load_movielens", "lr_find",
    "random_split", "read_ratings", "save_model", "sigmoid_range", "temporal_split", "user_split",
]
