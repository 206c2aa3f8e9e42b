"""TSM, two-stream (optical flow + late fusion), TimeSformer, ViViT and S3D: behaviour, not just shapes."""
import numpy as np
import pytest
import torch
from torch import nn

from trainers.config import ConfigError, build_model, count_parameters, load_model_config
from trainers.flow import dequantize_flow, flow_method, flow_stack, optical_flow, quantize_flow, tvl1_available
from trainers.models.resnet2d import ResNet2d, load_2d_weights
from trainers.models.s3d import MIXED, S3D, SelfGating, load_torchvision_s3d
from trainers.models.timesformer import TimeSformer
from trainers.models.transformer import load_vit_weights
from trainers.models.tsm import resnet_tsm, temporal_shift
from trainers.models.twostream import fuse_scores
from trainers.models.vivit import ViViT


def tiny(name, num_classes=5):
    torch.manual_seed(0)
    return build_model(load_model_config(name, tiny=True)["model"], num_classes=num_classes).eval()


# ------------------------------------------------------------------------------------------------ TSM

def test_temporal_shift_moves_the_right_channels_and_zero_pads():
    n, t, c = 2, 4, 16                                  # shift_div 8 -> 2 channels back, 2 forward, 12 stay
    value = torch.tensor([[[1000 * i + 100 * j + k for k in range(c)] for j in range(t)] for i in range(n)])
    out = temporal_shift(value.float().reshape(n * t, c, 1, 1), num_segments=t, shift_div=8)
    out = out.reshape(n, t, c).long()
    # clip 1, frame 2: channels 0-1 come from frame 3, channels 2-3 from frame 1, the rest are its own
    assert out[1, 2].tolist() == [1300, 1301, 1102, 1103] + [1200 + k for k in range(4, 16)]
    assert out[0, 3, :2].tolist() == [0, 0]            # nothing after the last frame
    assert out[0, 0, 2:4].tolist() == [0, 0]           # nothing before the first frame
    assert out[1, 0, :2].tolist() == [1100, 1101]      # clip 1 never reads clip 0
    assert out[0, 3, 2:4].tolist() == [202, 203]
    with pytest.raises(ValueError, match="multiple of num_segments"):
        temporal_shift(torch.zeros(6, 16, 1, 1), num_segments=4)


@pytest.mark.parametrize("place", ["blockres", "block"])
def test_tsm_shift_place_matches_a_hand_built_block(place):
    torch.manual_seed(0)
    tsm = resnet_tsm(depth=18, base_channels=8, num_segments=4, shift_place=place).eval()
    plain = ResNet2d(depth=18, base_channels=8).eval()
    plain.load_state_dict(tsm.state_dict())            # same parameter names: the shift adds none
    x = torch.randn(8, 8, 6, 6)
    blk, ref = tsm.layer1[0], plain.layer1[0]
    shifted = temporal_shift(x, 4)
    expected = ref.relu(ref.residual(shifted) + x) if place == "blockres" else ref(shifted)
    torch.testing.assert_close(blk(x), expected)
    assert not torch.allclose(blk(x), ref(x))


def test_tsm_has_no_extra_parameters_loads_torchvision_names_and_sees_frame_order(tmp_path):
    import torchvision
    tsn, tsm = tiny("tsn_r50"), tiny("tsm_r50")
    assert count_parameters(tsm) == count_parameters(tsn)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    report = load_2d_weights(resnet_tsm(depth=18), tmp_path / "r18.pth")
    assert report["missing"] == [] and report["unused"] == ["fc.bias", "fc.weight"]
    x = torch.randn(2, 1, 3, 8, 32, 32)
    reversed_x = x.flip(3)
    with torch.no_grad():
        torch.testing.assert_close(tsn(x), tsn(reversed_x))       # average consensus ignores order
        assert (tsm(x) - tsm(reversed_x)).abs().max() > 1e-4     # shifted features do not


# ------------------------------------------------------------------------------------------------ flow

def moving_square(steps=4, size=64, dx=2, dy=1, seed=0, side=20):
    """RGB frames: a textured square moving (dx, dy) px per frame over a static textured background."""
    import cv2
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(0, 255, (size, size)).astype(np.uint8), (5, 5), 1.0)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (side, side)).astype(np.uint8), (3, 3), 0.8)
    frames = []
    for t in range(steps):
        f = background.copy()
        f[20 + dy * t:20 + side + dy * t, 16 + dx * t:16 + side + dx * t] = texture
        frames.append(np.repeat(f[..., None], 3, axis=2))
    return np.stack(frames)


def test_optical_flow_of_a_translating_square_has_its_direction_and_speed():
    frames = moving_square()
    flow = optical_flow(frames)
    assert flow.shape == (3, 64, 64, 2) and flow.dtype == np.float32
    for t in range(3):
        inside = flow[t, 25 + t:35 + t, 21 + 2 * t:31 + 2 * t].reshape(-1, 2)
        np.testing.assert_allclose(np.median(inside, axis=0), [2.0, 1.0], atol=0.25)
        assert np.abs(flow[t, :12, :12]).max() < 0.1                 # the background stands still
    assert flow_method() in ("tvl1", "farneback")
    if not tvl1_available():
        with pytest.raises(RuntimeError, match="opencv-contrib"):
            optical_flow(frames, method="tvl1")


def test_flow_quantisation_and_the_ten_channel_stack():
    q = quantize_flow(np.array([-30.0, -20.0, 0.0, 2.0, 20.0, 99.0]))
    assert q.tolist() == [0, 0, 128, 140, 255, 255]
    np.testing.assert_allclose(dequantize_flow(q)[2:4], [0.0, 2.0], atol=40 / 255)
    segments = [moving_square(steps=6, side=30), moving_square(steps=6, dx=-1, dy=2, seed=1, side=30)]
    stack = flow_stack(np.stack(segments))
    assert stack.shape == (10, 2, 64, 64)
    inside = stack[:, :, 38, 33]                        # a pixel inside both squares in all 6 frames
    assert (inside[0::2, 0] > 0.05).all() and (inside[1::2, 0] > 0).all()     # x then y: right and down
    assert (inside[0::2, 1] < 0).all() and (inside[1::2, 1] > inside[1::2, 0]).all()  # left; down faster
    assert np.abs(stack[:, :, :8, :8]).max() < 0.02     # no motion -> ~0 after mean=std=128


def test_flow_tsn_runs_on_flow_stacks_and_inherits_averaged_imagenet_conv1(tmp_path):
    model = tiny("tsn_r50_flow")
    frames = np.stack([moving_square(steps=6, size=32, dx=1, dy=0, seed=s, side=8) for s in range(8)])  # 8 segments
    x = torch.from_numpy(flow_stack(frames))[None, None]             # [1, 1, 10, 8, 32, 32]
    assert model(x).shape == (1, 5)
    with pytest.raises(RuntimeError):
        model(torch.randn(1, 1, 3, 8, 32, 32))
    rgb = ResNet2d(depth=18, base_channels=8)
    torch.save(rgb.state_dict(), tmp_path / "rgb.pth")
    flow = ResNet2d(depth=18, base_channels=8, in_channels=10)
    assert load_2d_weights(flow, tmp_path / "rgb.pth")["missing"] == []
    mean = rgb.conv1.weight.mean(dim=1)
    for k in range(10):
        torch.testing.assert_close(flow.conv1.weight[:, k], mean)


# ------------------------------------------------------------------------------------------------ fusion

def test_two_stream_fuses_each_streams_view_averaged_scores():
    assert fuse_scores([torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 1.0]])], [1, 0.5]).tolist() == [[2.5, 2.5]]
    model = tiny("twostream_tsn_r50")
    assert model.rgb.num_classes == model.flow.num_classes == 5
    x = {"rgb": torch.randn(2, 3, 3, 8, 32, 32), "flow": torch.randn(2, 3, 10, 8, 32, 32)}
    with torch.no_grad():
        rgb, flow = model.rgb.predict(x["rgb"]), model.flow.predict(x["flow"])
        torch.testing.assert_close(model.predict(x), rgb + flow)
        model.coefficients = (1.0, 0.0)
        torch.testing.assert_close(model.predict(x), rgb)
    assert model.embed(x).shape == (6, 2 * model.rgb.backbone.out_channels)
    model.train()
    nn.functional.cross_entropy(model({k: v[:, :1] for k, v in x.items()}), torch.tensor([0, 1])).backward()
    assert model.rgb.backbone.conv1.weight.grad is not None and model.flow.backbone.conv1.weight.grad is not None
    with pytest.raises(ValueError, match="keys"):
        model(x["rgb"])
    bad = load_model_config("twostream_tsn_r50", tiny=True)["model"]
    bad["flow"]["backbone"]["in_chanels"] = 10
    with pytest.raises(ConfigError, match=r"model\.flow\.backbone.*in_chanels"):
        build_model(bad)


# ------------------------------------------------------------------------------------------------ TimeSformer

def last_block_tokens(model, x):
    """The sequence after the last transformer block (a hook, so the forward is the real one)."""
    seen = []
    handle = model.blocks[-1].register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("attention", ["divided_space_time", "joint_space_time", "space_only"])
def test_timesformer_variants_shapes_and_time_mixing(attention):
    torch.manual_seed(0)
    model = TimeSformer(num_frames=8, img_size=32, patch_size=8, embed_dims=32, num_layers=2, num_heads=2,
                        attention_type=attention, drop_path_rate=0.0).eval()
    if attention != "space_only":
        nn.init.normal_(model.time_embed, std=0.5)      # as after training; zero at init like the original
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 32)
    # change frame 0 only: do frame 5's tokens notice?
    x2 = x.clone()
    x2[:, :, 0] += 1.0
    a, b = last_block_tokens(model, x), last_block_tokens(model, x2)
    if attention == "space_only":
        frame5 = lambda s: s.reshape(2, 8, 17, 32)[:, 5]            # noqa: E731  [B*T, 1+N, D] per frame
    else:
        frame5 = lambda s: s[:, 1:].reshape(2, 8, 16, 32)[:, 5]     # noqa: E731  [B, 1+T*N, D]
    changed = (frame5(a) - frame5(b)).abs().max().item()        # ~3e-4 at init (weights of std 0.02)
    assert (changed < 1e-6) if attention == "space_only" else (changed > 1e-5)
    # shuffle frame order: space-only + average cannot tell, the others can
    with torch.no_grad():
        shuffled = model(x[:, :, torch.randperm(8, generator=torch.Generator().manual_seed(1))])
    if attention == "space_only":
        torch.testing.assert_close(shuffled, out)
    else:
        assert (shuffled - out).abs().max() > 1e-3


def test_vit_weights_initialise_divided_timesformer_and_vivit(tmp_path):
    torch.manual_seed(0)
    image_vit = TimeSformer(num_frames=1, img_size=32, patch_size=8, embed_dims=32, num_layers=2, num_heads=2,
                            attention_type="space_only")
    state = {("model." + k): v for k, v in image_vit.state_dict().items()}
    state["model.patch_embed.proj.weight"] = state["model.patch_embed.proj.weight"][:, :, 0]   # a 2D ViT kernel
    torch.save(state, tmp_path / "vit.pth")
    divided = TimeSformer(num_frames=8, img_size=48, patch_size=8, embed_dims=32, num_layers=2, num_heads=2)
    report = load_vit_weights(divided, tmp_path / "vit.pth")
    assert report["unused"] == []
    assert all(k == "time_embed" or ".temporal_fc." in k for k in report["missing"]), report["missing"]
    torch.testing.assert_close(divided.blocks[1].temporal_attn.qkv.weight, image_vit.blocks[1].attn.qkv.weight)
    assert divided.pos_embed.shape == (1, 1 + 36, 32)                # 4x4 grid resized to 6x6
    torch.testing.assert_close(divided.pos_embed[:, 0], image_vit.pos_embed[:, 0])
    vivit = ViViT(num_frames=8, img_size=32, patch_size=8, tubelet_size=2, embed_dims=32, num_layers=2,
                  temporal_layers=1, num_heads=2)
    report = load_vit_weights(vivit, tmp_path / "vit.pth")
    assert all(k.startswith("temporal_") for k in report["missing"]), report["missing"]
    torch.testing.assert_close(vivit.patch_embed.proj.weight.sum(dim=2), image_vit.patch_embed.proj.weight[:, :, 0])


# ------------------------------------------------------------------------------------------------ ViViT

def test_vivit_factorised_encoder_forward():
    torch.manual_seed(0)
    model = ViViT(num_frames=8, img_size=32, patch_size=8, tubelet_size=2, embed_dims=32, num_layers=2,
                  temporal_layers=1, num_heads=2).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    spatial = []
    model.blocks[0].register_forward_hook(lambda _m, inp, _o: spatial.append(inp[0].shape))
    with torch.no_grad():
        out = model(x)
        swapped = model(torch.cat([x[:, :, 2:4], x[:, :, :2], x[:, :, 4:]], dim=2))   # swap two tubelets
    assert out.shape == (2, 32)
    assert spatial[0] == (2 * 4, 1 + 16, 32)             # 4 tubelet slices, each its own 16 patches + cls
    assert model.temporal_pos_embed.shape == (1, 1 + 4, 32)
    assert (out - swapped).abs().max() > 1e-4             # the temporal encoder knows the order
    assert tiny("vivit_fe")(x[:, None]).shape == (2, 5)


# ------------------------------------------------------------------------------------------------ S3D

def test_s3d_is_torchvision_s3d_layer_for_layer(tmp_path, capsys):
    from torchvision.models.video import s3d as tv_s3d
    torch.manual_seed(0)
    theirs = tv_s3d().eval()
    for m in theirs.modules():                            # torchvision's init makes activations vanish (~1e-6)
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    ours = build_model(load_model_config("s3d")["model"]).eval()
    n_theirs, n_ours = count_parameters(theirs), count_parameters(ours)
    with capsys.disabled():
        print(f"\n  S3D params: torchvision s3d {n_theirs:,}  ours {n_ours:,}")
    assert abs(n_ours - n_theirs) <= 0.01 * n_theirs
    torch.save(theirs.state_dict(), tmp_path / "s3d.pth")
    assert load_torchvision_s3d(ours.backbone, tmp_path / "s3d.pth") == []
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        a, b = theirs.features(x), ours.backbone(x)
    assert a.abs().max() > 0.1
    torch.testing.assert_close(a, b)
    kernels = {m.kernel_size for m in ours.modules() if isinstance(m, nn.Conv3d)}
    assert all(k[0] == 1 or k[1:] == (1, 1) for k in kernels) and (3, 1, 1) in kernels   # separable only


def test_s3d_gating_parameters_and_behaviour():
    plain, gated = S3D(width=0.25), S3D(width=0.25, gating=True)
    widths = [48] + [round(w * 0.25) for ws in MIXED.values() for w in (ws[0], ws[2], ws[4], ws[5])]
    assert count_parameters(gated) - count_parameters(plain) == sum(c * c + c for c in widths)
    gate = SelfGating(2)
    with torch.no_grad():
        gate.fc.weight.copy_(torch.tensor([[4.0, 0.0], [0.0, -4.0]]))
        gate.fc.bias.zero_()
    x = torch.ones(1, 2, 2, 3, 3)
    out = gate(x)                                         # gate = sigmoid(+4) for channel 0, sigmoid(-4) for 1
    torch.testing.assert_close(out[0, :, 0, 0, 0], torch.sigmoid(torch.tensor([4.0, -4.0])))
    assert gate(3 * x)[0, 1, 0, 0, 0] < 3 * out[0, 1, 0, 0, 0]   # context-dependent: brighter clip, tighter gate
    model = tiny("s3dg")
    assert model(torch.randn(2, 1, 3, 8, 32, 32)).shape == (2, 5)


# ------------------------------------------------------------------------------------------------ all

@pytest.mark.parametrize("name", ["tsm_r50", "twostream_tsn_r50", "timesformer_divst", "vivit_fe", "s3dg"])
def test_tiny_model_fits_a_fixed_batch(name):
    model = tiny(name, num_classes=3).train()          # seeded; 20 AdamW steps memorise 6 random clips
    torch.manual_seed(1)
    clips = torch.randn(6, 1, 3, 8, 32, 32)
    x = {"rgb": clips, "flow": torch.randn(6, 1, 10, 8, 32, 32)} if name.startswith("twostream") else clips
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < 0.6 * losses[0], losses
