"""The embedded demo world: synthetic action videos, their web corpus with ground truth, and a loopback web."""
from curate.synth.plan import WorldSpec
from curate.synth.world import World, load_world, make_world

__all__ = ["World", "WorldSpec", "load_world", "make_world"]
