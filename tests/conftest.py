"""Shared fixtures."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WEB_KINDS = ("web_image", "feed_image", "feed_video")

# A 4-class world small enough to generate in a couple of seconds; every size is a WorldSpec field.
TINY_WORLD = dict(num_classes=4, seed=0, train_per_class=3, val_per_class=4, test_per_class=4,
                  web_images_per_class=10, feed_images_per_class=4, feed_videos_per_class=3, untrimmed_per_class=2,
                  near_copies=4, routines_per_event=1, scenes=2, broken=6)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """The demo world with 4 classes (curate.demo.synth.World), generated once per test session."""
    from curate.demo.synth import make_world

    return make_world(tmp_path_factory.mktemp("tiny_world"), workers=2, **TINY_WORLD)


@pytest.fixture(scope="module")
def web_rows(tiny_world):
    """The tiny world's web images and trimmed web videos as a crawler would list them (truth columns kept)."""
    from curate.core import manifest as mf

    truth = mf.read(tiny_world.truth_web, validate_rows=False)
    return truth[truth["kind"].isin(WEB_KINDS)].reset_index(drop=True)


@pytest.fixture(scope="session")
def truth(tiny_world):
    """The tiny world's web corpus with its ground truth (one row per web item)."""
    import pandas as pd

    return pd.read_parquet(tiny_world.truth_web)


@pytest.fixture(scope="module")
def web(tiny_world, request):
    """The tiny world's loopback web for one test module, served with the module's WEB_FAULTS if it sets them
    (curate.demo.synth.faults.Faults)."""
    from curate.demo.synth.web import serve

    with serve(tiny_world.root, faults=getattr(request.module, "WEB_FAULTS", None)) as handle:
        yield handle


@pytest.fixture(scope="module")
def ray_cluster(request):
    """A local Ray cluster (2 CPUs and the module's RAY_RESOURCES) for one test module: its workers import curate
    and get the module's shard functions."""
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(request.module)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), old]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, **getattr(request.module, "RAY_RESOURCES", {}))
    try:
        yield ray
    finally:
        ray.shutdown()
        os.environ.pop("PYTHONPATH") if old is None else os.environ.update(PYTHONPATH=old)


@pytest.fixture(scope="session")
def tiny_teacher(tiny_world, tmp_path_factory):
    """A tiny TSN (ResNet-18 at 1/8 width, 8 frames of 32²) trained 12 epochs on the tiny world's train split:
    the checkpoint `curate filter` and `curate dedup` tests score with."""
    import torch

    from trainers.inputs import data_overrides
    from trainers.sources import Source
    from trainers.train import make_config, train

    torch.set_num_threads(2)
    cfg = make_config("tsn_r50", tiny=True, overrides={"schedule": dict(epochs=12, batch_size=4, lr=1e-2,
                                                                        optimizer="adamw", grad_clip=None, seed=0,
                                                                        eval_every=12)})
    cfg["data"] = data_overrides(cfg["model"], size=32, scale=32, flip=0.0, train_crop="random")
    out = tmp_path_factory.mktemp("teacher")
    return train(cfg, [Source("target", tiny_world.target_manifest, split="train", root=tiny_world.root)], out,
                 progress=False).last


# Enough long videos and scenes for the localization / detection tests (tests/test_bmn.py, tests/test_ava.py).
LOCDET_WORLD = dict(num_classes=4, seed=0, train_per_class=3, val_per_class=2, test_per_class=2,
                    web_images_per_class=2, feed_images_per_class=1, feed_videos_per_class=1, untrimmed_per_class=8,
                    near_copies=2, routines_per_event=2, scenes=16, broken=0)


@pytest.fixture(scope="session")
def locdet_world(tmp_path_factory):
    """A 4-class demo world with 32 untrimmed videos, 4 routines and 16 AVA-style scenes."""
    from curate.demo.synth import make_world

    return make_world(tmp_path_factory.mktemp("locdet_world"), workers=2, **LOCDET_WORLD)
