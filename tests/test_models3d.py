"""3D CNN family (I3D, SlowOnly, SlowFast, R(2+1)D, CSN, C3D, X3D): shapes through Recognizer3D, I3D inflation,
CSN depthwise groups, (2+1)D widths, SlowFast laterals, and a tiny SlowOnly overfitting two clips via `curate train`."""
import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from curate import manifest as mf
from curate.cli import cli
from trainers.config import ConfigError, build_model, count_parameters, load_model_config
from trainers.models.resnet2d import ResNet2d
from trainers.models.resnet3d import Conv2Plus1d, ResNet3d, inflate_2d_weights, resnet3d_csn

# config -> backbone feature time length for an 8-frame clip (tiny widths, 32x32 -> 1x1 spatially)
FEATURE_T = {"slowonly_r50": 8, "i3d_r50": 1, "r2plus1d_r34": 1, "ircsn_r152": 1, "ipcsn_r152": 1}


def tiny(name, num_classes=5):
    torch.manual_seed(0)
    return build_model(load_model_config(name, tiny=True)["model"], num_classes=num_classes)


@pytest.mark.parametrize("name", sorted(FEATURE_T))
def test_tiny_model_shapes_through_recognizer3d(name):
    model = tiny(name).eval()
    x = torch.randn(2, 3, 3, 8, 32, 32)  # 2 clips x 3 views
    with torch.no_grad():
        feat = model.backbone(x[:, 0])
        logits, probs = model(x), model.predict(x)
    assert feat.shape == (2, model.backbone.out_channels, FEATURE_T[name], 1, 1)
    assert logits.shape == (6, 5) and probs.shape == (2, 5)
    assert torch.allclose(probs.sum(dim=1), torch.ones(2), atol=1e-5)


def randomise_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


def test_i3d_inflated_from_2d_sees_a_constant_clip_as_the_frame():
    """Kernels repeated over T and divided by T: on a clip of one repeated frame, the features away from the
    clip's ends (where zero temporal padding reaches in) equal the 2D network's features of that frame."""
    torch.manual_seed(0)
    net2d = ResNet2d(depth=50, base_channels=8)
    randomise_bn(net2d)
    net3d = ResNet3d(depth=50, base_channels=8)  # I3D-R50 layout: 5x7x7 stem, alternate 3x1x1 blocks, pool2
    report = inflate_2d_weights(net3d, net2d.state_dict())
    assert report == {"missing": [], "unused": []}
    assert net3d.conv1.weight.shape[2] == 5 and net3d.layer1[0].conv1.weight.shape[2] == 3
    assert torch.allclose(net3d.conv1.weight.sum(dim=2), net2d.conv1.weight, atol=1e-6)
    net2d.eval(), net3d.eval()
    frame = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        want = net2d(frame)[0, :, 0, 0]
        got = net3d(frame[:, :, None].expand(-1, -1, 160, -1, -1))[0, :, :, 0, 0]  # 160 frames -> 20 steps
    assert got.shape == (256, 20)
    middle = got[:, 9:11]
    assert torch.allclose(middle, want[:, None].expand_as(middle), rtol=1e-4, atol=1e-3 * want.abs().max())
    assert (got[:, 0] - want).abs().max() > 1.0  # the ends do feel the zero padding: the comparison is not vacuous


def test_inflated_weights_load_from_a_torchvision_file_through_the_config(tmp_path):
    torch.manual_seed(1)
    path = tmp_path / "r18.pth"
    torch.save(ResNet2d(depth=18, base_channels=8).state_dict(), path)
    cfg = load_model_config("slowonly_r50", tiny=True)["model"]
    cfg["backbone"]["pretrained"] = str(path)
    model = build_model(cfg, num_classes=3)
    w2d = torch.load(path, weights_only=True)["layer3.0.conv1.weight"]
    w3d = model.backbone.layer3[0].conv1.weight
    assert w3d.shape[2] == 3 and torch.allclose(w3d, w2d.unsqueeze(2).expand_as(w3d) / 3)


def test_csn_middle_convs_are_depthwise():
    ir, ip = resnet3d_csn(depth=50, base_channels=8, bottleneck_mode="ir"), resnet3d_csn(
        depth=50, base_channels=8, bottleneck_mode="ip")
    blocks = [b for i in range(1, 5) for b in getattr(ir, f"layer{i}")]
    for b in blocks:
        planes = b.conv1.out_channels
        assert b.conv2.groups == planes == b.conv2.in_channels == b.conv2.out_channels
        assert b.conv2.kernel_size == (3, 3, 3) and b.conv1.kernel_size == b.conv3.kernel_size == (1, 1, 1)
    for b in (b for i in range(1, 5) for b in getattr(ip, f"layer{i}")):
        pointwise, depthwise = b.conv2
        assert pointwise.kernel_size == (1, 1, 1) and pointwise.groups == 1 and depthwise.groups == b.conv1.out_channels
    # ip adds exactly one planes x planes 1x1x1 conv per block
    extra = sum(b.conv1.out_channels ** 2 for b in blocks)
    assert count_parameters(ip) - count_parameters(ir) == extra
    with pytest.raises(ValueError, match="bottleneck depth"):
        resnet3d_csn(depth=18)


def test_2plus1d_mid_channels_match_the_3d_parameter_count():
    conv = Conv2Plus1d(64, 128, (3, 3, 3))
    assert conv.conv_s.out_channels == int(3 * 64 * 128 * 9 / (64 * 9 + 3 * 128)) == 230
    full = 64 * 128 * 27
    assert abs(conv.conv_s.weight.numel() + conv.conv_t.weight.numel() - full) / full < 0.01
    model = tiny("r2plus1d_r34")
    assert all(isinstance(m, Conv2Plus1d) for m in (model.backbone.conv1, model.backbone.layer2[0].conv1,
                                                    model.backbone.layer2[0].downsample[0]))


def test_a_misspelt_backbone_key_lists_the_valid_ones():
    cfg = load_model_config("i3d_r50", tiny=True)["model"]
    cfg["backbone"]["inflate_stlye"] = "3x1x1"
    with pytest.raises(ConfigError, match="inflate_stlye.*valid keys.*inflate_style"):
        build_model(cfg)
    cfg = load_model_config("i3d_r50", tiny=True)["model"]
    cfg["backbone"]["inflate"] = [1, [1, 0, 1], 1, 1]  # a stage of 2 blocks given 3 flags
    with pytest.raises(ConfigError, match=r"inflate\[1\]"):
        build_model(cfg)


def test_tiny_slowonly_overfits_two_clips_with_curate_train(tiny_world, tmp_path):
    df = mf.read(tiny_world.target_manifest)
    two = df[(df["split"] == "train") & (df["status"] == "ok")].groupby("label_id").head(1).head(2)
    assert two["label_id"].nunique() == 2
    manifest = tmp_path / "two.parquet"
    mf.write(two.reset_index(drop=True), manifest)
    torch.set_num_threads(2)
    res = CliRunner().invoke(cli, ["train", str(manifest), "--model", "slowonly_r50", "--tiny", "--epochs", "15",
                                   "--batch-size", "2", "--optimizer", "adamw", "--lr", "0.01", "--val-split", "none",
                                   "--data-root", str(tiny_world.root), "--out", str(tmp_path / "run"),
                                   "--set", "schedule.log_every=1", "--set", "data.flip=0",
                                   "--set", "data.train_crop=random"])
    assert res.exit_code == 0, res.output
    losses = [e["loss"] for e in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
              if e["event"] == "train"]
    assert len(losses) == 15
    assert sum(losses[-3:]) / 3 < 0.3 * sum(losses[:3]) / 3, losses
    res = CliRunner().invoke(cli, ["eval", str(tmp_path / "run" / "last.pt"), str(manifest), "--split", "train",
                                   "--data-root", str(tiny_world.root)])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "run" / "eval_last_train" / "metrics.json").read_text())
    assert metrics["n"] == 2 and metrics["top1"] == 1.0
