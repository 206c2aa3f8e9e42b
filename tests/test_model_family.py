"""Every family member builds at its published size with the published parameter count (within 1 %)."""
import pytest
import torch

from trainers.config import build_model, count_parameters, load_model_config

# (config name, published parameter count in millions, where the number comes from)
PUBLISHED = [
    ("tsn_r50", 24.33, "MMAction2 TSN R50 1x1x8 K400"),
    ("tsm_r50", 24.33, "TSM R50 K400, 400 classes: the shift adds no parameters, so TSN R50's count"),
    ("tsm_r50_sthv2", 23.87, "MMAction2 TSM R50 1x1x8: its params column is the 174-class SSv2 head"),
    ("timesformer_divst", 122, "MMAction2 TimeSformer divST 8x32x1 K400"),
    ("timesformer_jointst", 86.11, "MMAction2 TimeSformer jointST 8x32x1 K400"),
    ("timesformer_spaceonly", 86.11, "MMAction2 TimeSformer spaceOnly 8x32x1 K400"),
    ("vivit_fe", 115.1, "ViViT paper Table 2, ViViT-B FE 16x2 (no codebase in models.md has ViViT)"),
    ("s3d", 8.32, "torchvision s3d, 400 classes (8,320,048; built and compared in test_models2d)"),
    ("i3d_r50", 28.0, "MMAction2 I3D R50 32x2x1 K400 (PyTorchVideo: 28.04M)"),
    ("slowonly_r50", 32.45, "MMAction2 SlowOnly R50 8x8x1 K400"),
    ("r2plus1d_r34", 63.8, "MMAction2 R(2+1)D R34 8x8x1 K400"),
    ("ircsn_r152", 29.70, "MMAction2 ir-CSN R152 32x2x1 K400"),
    ("ipcsn_r152", 33.02, "MMAction2 ip-CSN R152 32x2x1 K400"),
    ("slowfast_r50", 34.5, "MMAction2 SlowFast R50 4x16x1 K400 (8x8x1, fusion kernel 7: 34.6M)"),
    ("c3d", 78.4, "MMAction2 C3D 16x1x1 UCF-101 (101 classes)"),
    ("x3d_m", 3.8, "X3D-M, PySlowFast / X3D paper (XS, S and M share the network)"),
]


@pytest.mark.parametrize("name,published,source", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_published_parameter_count(name, published, source, capsys):
    ours = count_parameters(build_model(load_model_config(name)["model"])) / 1e6
    diff = 100 * (ours - published) / published
    with capsys.disabled():
        print(f"\n  {name:<24} published {published:8.2f}M  ours {ours:8.2f}M  diff {diff:+.2f}%  ({source})")
    assert abs(diff) <= 1.0


@pytest.mark.parametrize("name", [p[0] for p in PUBLISHED])
def test_tiny_version_runs_forward_and_backward(name):
    model = build_model(load_model_config(name, tiny=True)["model"], num_classes=5)
    x = torch.randn(2, 1, 3, 8, 32, 32)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 3]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert count_parameters(model) < 2_000_000


@pytest.mark.parametrize("name", ["tsn_r50", "slowonly_r50", "x3d_m"])
def test_norm_eval_keeps_batchnorm_statistics_frozen_in_training(name):
    cfg = load_model_config(name, tiny=True)["model"]
    frozen = build_model({**cfg, "backbone": {**cfg["backbone"], "norm_eval": True}}, num_classes=5).train()
    free = build_model(cfg, num_classes=5).train()
    norms = [m for m in frozen.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and not any(m.training for m in norms)
    assert all(m.training for m in free.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    before = [m.running_mean.clone() for m in norms]
    frozen(torch.randn(2, 1, 3, 8, 32, 32))
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, norms))
