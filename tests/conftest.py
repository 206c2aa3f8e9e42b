"""Shared fixtures."""
import pytest

# A 4-class world small enough to generate in a couple of seconds; every size is a WorldSpec field.
TINY_WORLD = dict(num_classes=4, seed=0, train_per_class=3, val_per_class=4, test_per_class=4,
                  web_images_per_class=10, feed_images_per_class=4, feed_videos_per_class=3, untrimmed_per_class=2,
                  near_copies=4, routines_per_event=1, scenes=2, broken=6)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """The demo world with 4 classes (curate.synth.World), generated once per test session."""
    from curate.synth import make_world

    return make_world(tmp_path_factory.mktemp("tiny_world"), workers=2, **TINY_WORLD)
