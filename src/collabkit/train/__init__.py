"""collabkit.train: build and train a model from its name (specs, presets) and the LR finder."""

from collabkit.train.build import ModelSpec, build_model, build_untrained, split_specs
from collabkit.train.presets import PRESETS, Preset

__all__ = ["PRESETS", "ModelSpec", "Preset", "build_model", "build_untrained", "split_specs"]
