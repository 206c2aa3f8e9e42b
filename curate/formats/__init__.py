"""Dataset formats as released (Kinetics, FineGym, ActivityNet, AVA, Something-Something, UCF101/HMDB51) and the class
lists that ship with curate (`class_list`): public facts kept as package data under curate/formats/data/
(data/SOURCES.md says where each file comes from)."""
from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).parent / "data"
CLASS_LISTS = {"kinetics400": "kinetics400.txt", "kinetics600": "kinetics600.txt",
               "kinetics700_2020": "kinetics700_2020.txt", "sthv2": "sthv2_labels.json"}


def class_list(name: str) -> list[str]:
    """A shipped class list, in label-id order (line i / id i); KeyError names the lists there are."""
    if name not in CLASS_LISTS:
        raise KeyError(f"no class list {name!r} ships with curate; there are {', '.join(CLASS_LISTS)}")
    path = DATA / CLASS_LISTS[name]
    if path.suffix == ".json":   # Something-Something's labels.json: template -> id as a string
        ids = json.loads(path.read_text(encoding="utf-8"))
        return sorted(ids, key=lambda k: int(ids[k]))
    return path.read_text(encoding="utf-8").splitlines()
