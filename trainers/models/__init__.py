"""Model family. Type names used in configs map to builders through these plain dicts (one per kind).

Builders take explicit keyword arguments (no **kwargs) so a config with a wrong key is reported with the list
of valid keys. Backbones expose `out_channels` (the head's in_channels default).
"""
from trainers.models.heads import I3DHead, SlowFastHead, TransformerHead, TSNHead
from trainers.models.recognizers import Recognizer2D, Recognizer3D
from trainers.models.resnet2d import ResNet2d

BACKBONES = {
    "ResNet": ResNet2d,
}

HEADS = {
    "TSNHead": TSNHead,
    "I3DHead": I3DHead,
    "SlowFastHead": SlowFastHead,
    "TransformerHead": TransformerHead,
}

RECOGNIZERS = {
    "Recognizer2D": Recognizer2D,
    "Recognizer3D": Recognizer3D,
}
