"""Feedback loops: a ground-truth world, the closed loop over rounds, exposure metrics, mitigations."""

from collabkit.simulate.loop import Simulation, simulate
from collabkit.simulate.mitigations import PRESETS, Mitigation, parse_mitigation
from collabkit.simulate.world import World, WorldConfig, build_world, fit_world

__all__ = [
    "PRESETS",
    "Mitigation",
    "Simulation",
    "World",
    "WorldConfig",
    "build_world",
    "fit_world",
    "parse_mitigation",
    "simulate",
]
