"""3D CNN family (I3D, SlowOnly, SlowFast, R(2+1)D, CSN, C3D, X3D): shapes through Recognizer3D, I3D inflation,
CSN depthwise groups, (2+1)D widths, SlowFast laterals, and a tiny SlowOnly overfitting two clips via `curate train`."""
import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from curate.cli import cli
from curate.core import manifest as mf
from trainers.config import ConfigError, build_model, count_parameters, load_model_config
from trainers.inputs import resolve_data
from trainers.models.resnet2d import ResNet2d
from trainers.models.resnet3d import Conv2Plus1d, ResNet3d, inflate_2d_weights, resnet3d_csn
from trainers.models.slowfast import ResNet3dSlowFast
from trainers.models.x3d import X3D, SqueezeExcite

# config -> backbone feature time length for an 8-frame clip (tiny widths, 32x32 -> 1x1 spatially)
FEATURE_T = {"slowonly_r50": 8, "i3d_r50": 1, "r2plus1d_r34": 1, "ircsn_r152": 1, "ipcsn_r152": 1, "x3d_m": 8}


# (config, crop side, published GFLOPs of one view = multiply-adds, source). MMAction2 counts its 3D ResNets at
# 256x256 (224 x 256/224 = the 0.766 ratio a 224 count shows), C3D at 112, PySlowFast X3D-M at 224.
PUBLISHED_GFLOPS = [
    ("i3d_r50", 256, 43.5, "MMAction2 I3D R50 32x2x1"),
    ("slowonly_r50", 256, 54.75, "MMAction2 SlowOnly R50 8x8x1"),
    ("slowfast_r50", 256, 36.3, "MMAction2 SlowFast R50 4x16x1"),
    ("r2plus1d_r34", 256, 213, "MMAction2 R(2+1)D R34 32x2x1"),
    ("ircsn_r152", 256, 97.63, "MMAction2 ir-CSN R152 32x2x1"),
    ("ipcsn_r152", 256, 109.9, "MMAction2 ip-CSN R152 32x2x1"),
    ("c3d", 112, 38.5, "MMAction2 C3D 16x1x1"),
    ("x3d_m", 224, 4.73, "PySlowFast X3D-M 16x5"),
]


@pytest.mark.parametrize("name,side,published,source", PUBLISHED_GFLOPS, ids=[p[0] for p in PUBLISHED_GFLOPS])
def test_full_size_flops_match_the_published_ones(name, side, published, source, capsys):
    """Counted on the meta device (no memory, no compute) for one clip of the config's clip_len: checks the
    temporal and spatial strides that parameter counts cannot see. torch's counter takes convs and matmuls only;
    mmcv's also counts BN, activations and pools, so ours may sit up to ~1 % below."""
    cfg = load_model_config(name)
    with torch.device("meta"):
        model = build_model(cfg["model"]).eval()
        clip = torch.empty(1, 1, 3, resolve_data(cfg)["clip_len"], side, side)
    with FlopCounterMode(display=False) as counter:
        model(clip)
    ours = counter.get_total_flops() / 2e9
    diff = 100 * (ours - published) / published
    with capsys.disabled():
        print(f"\n  {name:<14} {side}px published {published:7.2f} GMACs  ours {ours:7.2f}  diff {diff:+.2f}%  "
              f"({source})")
    assert -1.5 <= diff <= 0.5


def tiny(name, num_classes=5):
    torch.manual_seed(0)
    return build_model(load_model_config(name, tiny=True)["model"], num_classes=num_classes)


@pytest.mark.parametrize("name", [*sorted(FEATURE_T), "slowfast_r50", "c3d"])
def test_tiny_model_shapes_through_recognizer3d(name):
    model = tiny(name).eval()
    x = torch.randn(2, 3, 3, 8, 32, 32)  # 2 clips x 3 views
    with torch.no_grad():
        feat = model.backbone(x[:, 0])
        logits, probs = model(x), model.predict(x)
    if name == "slowfast_r50":  # tau 4, alpha 4 in the tiny config: 2 slow frames, 8 fast ones
        slow, fast = feat
        assert slow.shape[1] + fast.shape[1] == model.backbone.out_channels == model.cls_head.in_channels
        assert slow.shape[2:] == (2, 1, 1) and fast.shape[2:] == (8, 1, 1)
    elif name == "c3d":
        assert feat.shape == (2, model.backbone.out_channels)
    else:
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


def test_torchvision_resnet50_inflates_key_for_key_into_i3d():
    import torchvision

    report = inflate_2d_weights(ResNet3d(depth=50), torchvision.models.resnet50().state_dict())
    assert report == {"missing": [], "unused": ["fc.bias", "fc.weight"]}


def test_slowfast_slow_pathway_inflates_with_zero_lateral_weights(tmp_path):
    torch.manual_seed(2)
    path = tmp_path / "r18.pth"
    net2d = ResNet2d(depth=18, base_channels=8)
    torch.save({f"module.{k}": v for k, v in net2d.state_dict().items()}, path)  # DataParallel-style keys
    model = ResNet3dSlowFast(depth=18, base_channels=8, channel_ratio=2, pretrained=str(path))
    w3d, w2d = model.slow_path.layer2[0].conv1.weight, net2d.layer2[0].conv1.weight  # 8 slow + 2 x 4 fast channels
    assert w3d.shape[1] == w2d.shape[1] + 8 and (w3d[:, w2d.shape[1]:] == 0).all()
    assert torch.allclose(w3d[:, :w2d.shape[1]].sum(dim=2), w2d, atol=1e-6)
    report = inflate_2d_weights(model.slow_path, torch.load(path, weights_only=True))
    assert report["unused"] == []  # the lateral makes res2's first block project its input; R18 has no such conv
    assert report["missing"] == [f"layer1.0.downsample.{k}" for k in
                                 ("0.weight", "1.bias", "1.running_mean", "1.running_var", "1.weight")]


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
        pointwise, norm, depthwise = b.conv2
        assert pointwise.kernel_size == (1, 1, 1) and pointwise.groups == 1 and depthwise.groups == b.conv1.out_channels
        assert isinstance(norm, nn.BatchNorm3d) and norm.num_features == b.conv1.out_channels
    # ip adds exactly one planes x planes 1x1x1 conv and its BatchNorm (scale, shift) per block
    extra = sum(b.conv1.out_channels ** 2 + 2 * b.conv1.out_channels for b in blocks)
    assert count_parameters(ip) - count_parameters(ir) == extra
    eps = {m.eps for m in resnet3d_csn(depth=50, base_channels=8, bn_eps=1e-3).modules() if isinstance(m, nn.BatchNorm3d)}
    assert eps == {1e-3}
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
    # MMAction2's config gives the network's BNs eps 1e-3; the BN inside each (2+1)D conv keeps the default
    eps = {(name.endswith("bn_s"), m.eps) for name, m in model.named_modules() if isinstance(m, nn.BatchNorm3d)}
    assert eps == {(True, 1e-5), (False, 1e-3)}


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
    res = CliRunner().invoke(cli, ["train", str(manifest), "--model", "slowonly_r50", "--tiny", "--epochs", "10",
                                   "--batch-size", "2", "--optimizer", "adamw", "--lr", "0.01", "--val-split", "none",
                                   "--data-root", str(tiny_world.root), "--out", str(tmp_path / "run"),
                                   "--set", "schedule.log_every=1", "--set", "data.flip=0",
                                   "--set", "data.train_crop=random"])
    assert res.exit_code == 0, res.output
    losses = [e["loss"] for e in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
              if e["event"] == "train"]
    assert len(losses) == 10
    assert sum(losses[-3:]) / 3 < 0.3 * sum(losses[:3]) / 3, losses
    res = CliRunner().invoke(cli, ["eval", str(tmp_path / "run" / "last.pt"), str(manifest), "--split", "train",
                                   "--data-root", str(tiny_world.root)])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "run" / "eval_last_train" / "metrics.json").read_text())
    assert metrics["n"] == 2 and metrics["top1"] == 1.0


def test_slowfast_laterals_fuse_fast_into_slow_at_matching_time():
    """Full-width layout (tau 8, alpha 8, beta_inv 8) at a small frame size: each lateral maps the fast
    features to 2x their channels at the slow pathway's frame count, and the slow stage takes both."""
    model = ResNet3dSlowFast(depth=50).eval()
    seen = []
    for i, lateral in enumerate(model.laterals):
        lateral.register_forward_hook(lambda m, inp, out, i=i: seen.append((i, inp[0].shape, out.shape)))
    for i in range(4):
        getattr(model.slow_path, f"layer{i + 1}")[0].register_forward_hook(
            lambda m, inp, out, i=i: seen.append((f"slow{i}", inp[0].shape, out.shape)))
    with torch.no_grad():
        slow, fast = model(torch.randn(1, 3, 32, 64, 64))
    by = {k: (a, b) for k, a, b in seen}
    fast_widths, slow_widths = [8, 32, 64, 128], [64, 256, 512, 1024]
    sizes = [16, 16, 8, 4]  # H = W after the stem and res2..res4
    for i in range(4):
        f_in, f_out = by[i]
        assert tuple(f_in) == (1, fast_widths[i], 32, sizes[i], sizes[i])
        assert tuple(f_out) == (1, 2 * fast_widths[i], 4, sizes[i], sizes[i])
        assert by[f"slow{i}"][0][1] == slow_widths[i] + 2 * fast_widths[i]
    assert slow.shape == (1, 2048, 4, 2, 2) and fast.shape == (1, 256, 32, 2, 2)
    with pytest.raises(ValueError, match="multiple of speed_ratio"):
        ResNet3dSlowFast(resample_rate=8, speed_ratio=3)


def test_x3d_blocks_are_depthwise_with_se_on_every_other_block():
    model = X3D()
    depths = [len(s) for s in model.stages]
    assert depths == [3, 5, 11, 7]  # ceil(2.2 x (1, 2, 5, 3))
    for stage in model.stages:
        for j, block in enumerate(stage):
            dw = block.conv2[0]
            assert dw.groups == dw.in_channels == dw.out_channels and dw.kernel_size == (3, 3, 3)
            assert isinstance(block.se, SqueezeExcite) == (j % 2 == 0)
            assert isinstance(block.act, nn.SiLU)
    assert model.conv1_t[0][0].groups == 24 and model.out_channels == 432


def test_c3d_names_its_clip_size_when_given_another():
    model = tiny("c3d")
    with pytest.raises(ValueError, match="clip_len/img_size"):
        model(torch.randn(1, 1, 3, 8, 64, 64))
