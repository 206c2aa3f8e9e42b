"""Model family. Type names used in configs map to builders through these plain dicts (one per kind).

Builders take explicit keyword arguments (no **kwargs) so a config with a wrong key is reported with the list
of valid keys. Backbones expose `out_channels` (the head's in_channels default).
"""
from trainers.models.bmn import BMN
from trainers.models.c3d import C3D
from trainers.models.heads import I3DHead, SlowFastHead, TransformerHead, TSMHead, TSNHead
from trainers.models.recognizers import Recognizer2D, Recognizer3D
from trainers.models.resnet2d import ResNet2d
from trainers.models.resnet3d import ResNet3d, resnet2plus1d, resnet3d_csn, resnet3d_slowonly
from trainers.models.roi_head import AVADetector, RoIHead
from trainers.models.s3d import S3D
from trainers.models.slowfast import ResNet3dSlowFast
from trainers.models.timesformer import TimeSformer
from trainers.models.tsm import resnet_tsm
from trainers.models.tv_video import TorchvisionVideo
from trainers.models.twostream import TwoStream
from trainers.models.vivit import ViViT
from trainers.models.x3d import X3D, X3DHead

BACKBONES = {
    "ResNet": ResNet2d,
    "ResNetTSM": resnet_tsm,
    "TimeSformer": TimeSformer,
    "ViViT": ViViT,
    "S3D": S3D,
    "ResNet3d": ResNet3d,
    "ResNet3dSlowOnly": resnet3d_slowonly,
    "ResNet2Plus1d": resnet2plus1d,
    "ResNet3dCSN": resnet3d_csn,
    "ResNet3dSlowFast": ResNet3dSlowFast,
    "C3D": C3D,
    "X3D": X3D,
    "TorchvisionVideo": TorchvisionVideo,
}

HEADS = {
    "TSNHead": TSNHead,
    "I3DHead": I3DHead,
    "SlowFastHead": SlowFastHead,
    "TransformerHead": TransformerHead,
    "TimeSformerHead": TransformerHead,
    "TSMHead": TSMHead,
    "X3DHead": X3DHead,
}

RECOGNIZERS = {
    "Recognizer2D": Recognizer2D,
    "Recognizer3D": Recognizer3D,
}

# Models made of whole recognizers (each stream its own {type, backbone, cls_head}), fused late.
FUSIONS = {
    "TwoStream": TwoStream,
}

# Temporal action localizers: feature sequences [B, C, T] in, proposal maps out (trainers/localization.py).
LOCALIZERS = {
    "BMN": BMN,
}

# Spatio-temporal action detectors: a backbone + a per-box head (trainers/detection.py).
DETECTORS = {
    "AVADetector": AVADetector,
}

ROI_HEADS = {
    "RoIHead": RoIHead,
}
