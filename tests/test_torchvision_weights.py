"""torchvision's video weights (curate weights import --from torchvision), live against torchvision 0.29: the converted
model gives torchvision's probabilities on small inputs, with torchvision's preprocessing and class list recorded."""
import re

import pytest
import torch
from torch import nn
from torchvision.models import get_model_weights, video

from curate.clean.classes import class_key
from curate.formats import class_list
from trainers.checkpoint import load_checkpoint, save_checkpoint
from trainers.models.heads import I3DHead
from trainers.published import TORCHVISION, import_weights

# (arch, input [N, V, C, T, H, W]): torchvision's S3D head pools 7x7 (224 at least; 32 frames -> 4 feature steps,
# so its sliding time pooling is exercised); MViT is built for 16x224x224. Building and initialising the larger
# models takes most of their time.
CASES = [
    ("r3d_18", (1, 2, 3, 8, 64, 64)),
    ("mc3_18", (1, 2, 3, 8, 64, 64)),
    ("r2plus1d_18", (1, 2, 3, 8, 64, 64)),
    pytest.param("s3d", (1, 1, 3, 32, 224, 224), marks=pytest.mark.slow),
    pytest.param("swin3d_t", (1, 2, 3, 8, 64, 64), marks=pytest.mark.slow),
    pytest.param("swin3d_s", (1, 1, 3, 8, 64, 64), marks=pytest.mark.slow),
    pytest.param("swin3d_b", (1, 1, 3, 8, 64, 64), marks=pytest.mark.slow),
    pytest.param("mvit_v1_b", (1, 1, 3, 16, 224, 224), marks=pytest.mark.slow),
    pytest.param("mvit_v2_s", (1, 1, 3, 16, 224, 224), marks=pytest.mark.slow),
]


def randomised(arch: str, x: torch.Tensor) -> nn.Module:
    """torchvision's model with He-scaled kernels, BatchNorm statistics off their defaults and a classifier whose
    logits spread ~2 on x (its own init gives near-uniform probabilities, which would hide any mistake)."""
    torch.manual_seed(0)
    model = getattr(video, arch)()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.8, 1.2)
                m.bias.normal_(0, 0.1)
        model.eval()
        classifier = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv3d))][-1]
        classifier.weight.mul_(2.0 / model(x).std())
    return model


@pytest.mark.parametrize("arch,shape", CASES)
def test_torchvision_weights_give_torchvisions_probabilities(arch, shape, tmp_path, capsys):
    x = torch.randn(shape)
    n, v = shape[:2]
    theirs = randomised(arch, x.flatten(0, 1))
    torch.save(theirs.state_dict(), tmp_path / f"{arch}.pth")
    model, meta = import_weights(tmp_path / f"{arch}.pth", "torchvision", arch)
    with torch.no_grad():
        logits = theirs(x.flatten(0, 1))
        expected = logits.softmax(-1).reshape(n, v, -1).mean(1)
        ours, our_logits = model.predict(x), model(x)
    diff = (ours - expected).abs().max().item()
    with capsys.disabled():
        print(f"\n  {arch:<12} max |p_ours - p_torchvision| {diff:.1e}  (top p {expected.max():.2f})")
    assert diff < 1e-4 and expected.max() > 0.02
    torch.testing.assert_close(our_logits, logits, rtol=1e-4, atol=1e-4)
    assert meta["classes"] == class_list("kinetics400") and meta["source"]["format"] == "torchvision"


def test_torchvisions_preprocessing_and_classes_are_recorded(tmp_path):
    """The clip geometry of each arch's weights (torchvision's own accuracy notes), its resize / crop / mean / std,
    and Kinetics-400 in torchvision's order."""
    for arch, spec in TORCHVISION.items():
        weights = get_model_weights(arch).DEFAULT
        docs = dict(re.findall(r"`(\w+)=([\d.]+)`", weights.meta["_docs"]))
        assert spec.clip == (int(docs["clip_len"]), round(30 / float(docs["frame_rate"])), int(docs["clips_per_video"]))
        assert [class_key(c) for c in weights.meta["categories"]] == [class_key(c) for c in class_list("kinetics400")]
    torch.save(randomised("r3d_18", torch.randn(1, 3, 8, 64, 64)).state_dict(), tmp_path / "r3d.pth")
    model, meta = import_weights(tmp_path / "r3d.pth", "torchvision", "r3d_18")
    save_checkpoint(tmp_path / "r3d.pt", model, meta)
    loaded, meta = load_checkpoint(tmp_path / "r3d.pt")
    x = torch.randn(1, 1, 3, 8, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.predict(x), model.predict(x))
    data = next(iter(meta["input"].values()))
    assert {k: data[k] for k in ("clip_len", "frame_interval", "size", "scale", "views")} == \
        {"clip_len": 16, "frame_interval": 2, "size": 112, "scale": 128, "views": [5, 1]}
    assert data["mean"] == pytest.approx([0.43216 * 255, 0.394666 * 255, 0.37645 * 255], abs=1e-3)
    assert data["std"] == pytest.approx([0.22803 * 255, 0.22145 * 255, 0.216989 * 255], abs=1e-3)
    assert meta["model"]["backbone"] == {"type": "TorchvisionVideo", "arch": "r3d_18"}


def test_the_s3d_head_pools_time_as_torchvision_does():
    """Its (2, 7, 7) windows at stride 1, then their mean: the first and last time steps count half (4 steps)."""
    feat = torch.randn(2, 16, 4, 7, 7)
    head = I3DHead(5, 16, pool_kernel=[2, 7, 7])
    windows = nn.AvgPool3d((2, 7, 7), stride=1)(feat).flatten(2).mean(2)
    torch.testing.assert_close(head.pool(feat), windows)
    weights = torch.tensor([1, 2, 2, 1]) / 6
    torch.testing.assert_close(head.pool(feat), (feat.mean((3, 4)) * weights).sum(2))
    assert I3DHead(5, 16, pool_kernel=[2, 7, 7]).pool(feat[:, :, :1, :2, :2]).shape == (2, 16)   # cut to the map
