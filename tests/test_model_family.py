"""Every family member builds at its published size with the published parameter count (within 1 %)."""
import pytest
import torch

from trainers.config import MODEL_DIR, build_model, count_parameters, load_model_config

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


# (config name, MMAction2 1.2.0 config under configs/recognition/, its parameter count): the count of the model that
# config builds (tests/tools/record_mmaction2.py records it with every tensor's name and shape; tests/test_published.py
# fits those onto ours one by one). Ours must have exactly as many.
MMACTION2 = [
    ("tsn_r50", "tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb", 24_327_632),
    ("tsm_r50", "tsm/tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb", 24_327_632),
    ("i3d_r50", "i3d/i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb", 28_043_472),
    ("r2plus1d_r34", "r2plus1d/r2plus1d_r34_8xb8-32x2x1-180e_kinetics400-rgb", 63_759_281),
    ("ircsn_r152", "csn/ircsn_ig65m-pretrained-r152_8xb12-32x2x1-58e_kinetics400-rgb", 29_703_568),
    ("ipcsn_r152", "csn/ipcsn_ig65m-pretrained-r152-bnfrozen_32x2x1-58e_kinetics400-rgb", 33_016_592),
    ("slowonly_r50", "slowonly/slowonly_r50_8xb16-4x16x1-256e_kinetics400-rgb", 32_454_096),
    ("slowfast_r50", "slowfast/slowfast_r50_8xb8-4x16x1-256e_kinetics400-rgb", 34_479_288),
    ("x3d_m", "x3d/x3d_m_16x5x1_facebook-kinetics400-rgb", 3_794_322),
    ("c3d", "c3d/c3d_sports1m-pretrained_8xb30-16x1x1-45e_ucf101-rgb", 78_409_573),
    ("timesformer_divst", "timesformer/timesformer_divST_8xb8-8x32x1-15e_kinetics400-rgb", 121_566_352),
    ("timesformer_jointst", "timesformer/timesformer_jointST_8xb8-8x32x1-15e_kinetics400-rgb", 86_112_400),
    ("timesformer_spaceonly", "timesformer/timesformer_spaceOnly_8xb8-8x32x1-15e_kinetics400-rgb", 86_106_256),
]


@pytest.mark.parametrize("name,config,count", MMACTION2, ids=[m[0] for m in MMACTION2])
def test_parameter_count_is_mmaction2s_for_the_same_config(name, config, count):
    with torch.device("meta"):           # shapes only: no memory, no initialisation
        ours = count_parameters(build_model(load_model_config(name)["model"]))
    assert ours == count, f"{name}: ours {ours:,}, MMAction2's {config} {count:,}"


def test_the_mmaction2_configs_are_the_ones_the_converter_and_the_yaml_name():
    from trainers.mmaction2 import FAMILIES

    assert {m[0]: m[1] for m in MMACTION2} == {k: f.config for k, f in FAMILIES.items()}
    first_line = (MODEL_DIR / "ipcsn_r152.yaml").read_text().splitlines()[0]
    assert FAMILIES["ipcsn_r152"].config.split("/")[1] in first_line


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
