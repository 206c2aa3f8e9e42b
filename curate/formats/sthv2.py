"""Something-Something v2 as released -> one manifest.

Files: `something-something-v2-labels.json` ({class text: "id"}, 174 classes; a copy ships as
curate/formats/data/sthv2_labels.json), `something-something-v2-{train,validation}.json` ([{id, label, template,
placeholders}]; the class is the template without its square brackets) and `something-something-v2-test.json`
([{id}]). The videos are `<id>.webm` in one folder (20bn-something-something-v2/).

Rows are files the user keeps, as for UCF101: source `local`, source_id `sthv2/<id>.webm`, path `<id>.webm`,
label = the class text (a key of the labels file), label_id = its id, split train / val / test (no label). Extra
columns: `caption` (the entry's own `label`: the template with its objects filled in) and `placeholders` (JSON list
of the objects).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curate.core.files import FileFormatError, read_json
from curate.formats.local import local_rows

if TYPE_CHECKING:   # the CLI lists its importers without loading pandas
    import pandas as pd

LABELS = Path(__file__).parent / "data" / "sthv2_labels.json"
LABEL_FILES = ("something-something-v2-labels.json", "labels.json")
FILES = {"train": "something-something-v2-train.json", "val": "something-something-v2-validation.json",
         "test": "something-something-v2-test.json"}


class SthV2Error(FileFormatError):
    """A Something-Something v2 file that does not follow the released format; the message names file and key."""


def read_labels(path: str | Path = LABELS) -> dict[str, int]:
    """class text -> id from a labels file (ids "0".."N-1", each once)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise SthV2Error(f"{path}: expected an object {{class text: \"id\"}}, got {type(data).__name__}")
    out = {}
    for text, value in data.items():
        if not isinstance(value, str) or not value.isdigit():
            raise SthV2Error(f"{path}: [{json.dumps(text)}]: expected an id string such as \"0\", got {value!r}")
        out[text] = int(value)
    if sorted(out.values()) != list(range(len(out))):
        raise SthV2Error(f"{path}: ids must run 0..{len(out) - 1}, each once")
    return out


def class_text(template: str) -> str:
    """The labels-file key of a template: "[Something] falling" -> "Something falling"."""
    return template.replace("[", "").replace("]", "")


def _entry(e: Any, at: str, classes: dict[str, int], labels_path: Path, labelled: bool) -> tuple[str, dict]:
    """(video id, row fields) of one list entry; `labelled` entries must carry a template."""
    if not isinstance(e, dict):
        raise SthV2Error(f"{at}: expected an object, got {e!r}")
    vid = e.get("id")
    if not isinstance(vid, str) or not vid.isdigit():
        raise SthV2Error(f"{at}.id: expected a digit string, got {vid!r}")
    if "template" not in e and not labelled:
        return vid, {"label": None, "label_id": None, "caption": None, "placeholders": None}
    template, caption, objects = e.get("template"), e.get("label"), e.get("placeholders", [])
    if not isinstance(template, str):
        raise SthV2Error(f"{at}.template: expected a string, got {template!r}")
    label = class_text(template)
    if label not in classes:
        raise SthV2Error(f"{at}.template: {label!r} is not a class of {labels_path}")
    if caption is not None and not isinstance(caption, str):
        raise SthV2Error(f"{at}.label: expected a string, got {caption!r}")
    if not isinstance(objects, list) or not all(isinstance(o, str) for o in objects):
        raise SthV2Error(f"{at}.placeholders: expected a list of strings, got {objects!r}")
    return vid, {"label": label, "label_id": classes[label], "caption": caption, "placeholders": json.dumps(objects)}


def read_sthv2(annot_dir: str | Path, video_root: str | Path | None = None, labels: str | Path | None = None
               ) -> pd.DataFrame:
    """The train / validation / test lists found in annot_dir -> manifest. Classes come from `labels`, else the
    folder's labels file, else the bundled copy; a row is `ok` when `<id>.webm` lies under video_root."""
    folder = Path(annot_dir)
    labels_path = Path(labels) if labels else next((folder / n for n in LABEL_FILES if (folder / n).is_file()), LABELS)
    classes = read_labels(labels_path)
    present = {split: folder / name for split, name in FILES.items() if (folder / name).is_file()}
    if not present:
        raise SthV2Error(f"{folder}: none of {', '.join(FILES.values())}")
    entries, extra, seen = [], [], {}
    for split, path in present.items():
        data = read_json(path)
        if not isinstance(data, list):
            raise SthV2Error(f"{path}: expected a list of videos, got {type(data).__name__}")
        for k, e in enumerate(data):
            vid, fields = _entry(e, f"{path}: [{k}]", classes, labels_path, split != "test")
            if vid in seen:
                raise SthV2Error(f"{path}: [{k}].id: video {vid} is also {seen[vid]}")
            seen[vid] = f"[{k}] of {path.name}"
            entries.append((f"{vid}.webm", fields.pop("label"), fields.pop("label_id"), split))
            extra.append(fields)
    return local_rows(entries, "sthv2", Path(video_root) if video_root else None, extra)
