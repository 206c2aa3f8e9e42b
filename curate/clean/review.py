"""A person's review of a filter's decisions: `review_page` writes one self-contained HTML file (previews inlined as
base64) listing, per class, the top suspected label errors and the items nearest the keep threshold; the page's
JavaScript collects keep / drop / relabel per item and downloads them as a CSV (`item_id,decision,label`), which
`apply_decisions` (`curate filter --decisions FILE`) applies.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from curate import media
from curate.clean.filter import RULE_CODES
from curate.clean.label_issues import set_labels
from curate.clean.plots import thumb
from curate.clean.teacher import inspection_only, manifest_classes
from curate.core import manifest as mf
from curate.core.files import write_text

DECISIONS = ("keep", "drop", "relabel")
CSV_HEADER = "item_id,decision,label"


# ------------------------------------------------------------------------------------------------ decisions

def read_decisions(path: str | Path) -> pd.DataFrame:
    """A decisions CSV (item_id,decision,label; label only for relabel: a class name or label id); the last line
    about an item wins, as on the page."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(df.columns[:3]) != CSV_HEADER.split(","):
        raise ValueError(f"{path}: a decisions file starts with the header {CSV_HEADER!r}, not {','.join(df.columns)!r}")
    bad = df[~df["decision"].isin(DECISIONS)]
    if len(bad):
        raise ValueError(f"{path}: decision {bad['decision'].iloc[0]!r} (item {bad['item_id'].iloc[0]}) is not one of "
                         f"{list(DECISIONS)}")
    return df.drop_duplicates("item_id", keep="last").reset_index(drop=True)


def apply_decisions(df: pd.DataFrame, decisions: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """keep: status ok; drop: rejected with `review_drop`; relabel: kept under the given class, the first label in
    original_label / original_label_id (teacher_score: the suggested p when it is the suggested class, else NA).
    Unknown items, classes, and kept rows without a file are refused."""
    df = df.reset_index(drop=True)
    unknown = sorted(set(decisions["item_id"]) - set(df["item_id"]))
    if unknown:
        raise ValueError(f"decisions name {len(unknown)} items that are not in the manifest, e.g. {unknown[0]}")
    want = df["item_id"].map(decisions.set_index("item_id")["decision"])
    fileless = (want.isin(["keep", "relabel"]) & (df["path"].isna() | (df["status"] == "failed")))
    if fileless.any():
        raise ValueError(f"{int(fileless.sum())} rows to keep have no usable file, e.g. {df.loc[fileless, 'item_id'].iloc[0]}")
    names = manifest_classes(df)
    by_name = {v: k for k, v in names.items()}
    asked = df.loc[want == "relabel", "item_id"].map(decisions.set_index("item_id")["label"])
    ids = asked.map(lambda v: int(v) if v.isdigit() and int(v) in names else by_name.get(v))
    if ids.isna().any():
        raise ValueError(f"relabel to {asked[ids.isna()].iloc[0]!r}: not a class of the manifest")
    df = df.copy()
    df.loc[want == "keep", ["status", "error"]] = ["ok", None]
    df.loc[want == "drop", ["status", "error"]] = ["rejected", "review_drop: a reviewer dropped it"]
    if len(ids):
        sugg = df.loc[ids.index, "suggested_label_id"] if "suggested_label_id" in df else pd.Series(pd.NA, ids.index)
        p = df.loc[ids.index, "suggested_p"] if "suggested_p" in df else pd.Series(pd.NA, ids.index)
        score = p.where(sugg.astype("Float64") == ids.astype("Float64"), pd.NA)
        df = set_labels(df, want == "relabel", ids.astype("Int32"), score)
    return df, {d: int((want == d).sum()) for d in DECISIONS}


# ------------------------------------------------------------------------------------------------ the page

def picks(df: pd.DataFrame, per_class: int) -> dict[str, dict[str, pd.DataFrame]]:
    """Per class: 'errors' (flagged label issues, least self-confident first) and 'borderline' (the lowest-scored kept
    and the highest-scored rejected rows the keep rules judged), each item once."""
    judged = df[df["teacher_score"].notna() & ~inspection_only(df) & ~df["source"].eq("shot")
                & ((df["status"] == "ok") | df["error"].map(mf.error_code).isin(RULE_CODES))]
    out = {}
    for name, rows in judged.groupby("label", sort=True):
        flagged = rows[rows["label_issue"].fillna(False).astype(bool)] if "label_issue" in rows else rows.iloc[:0]
        errors = flagged.sort_values("self_confidence", kind="stable").head(per_class)
        rest = rows[~rows["item_id"].isin(errors["item_id"])].sort_values("teacher_score", kind="stable")
        kept, dropped = rest[rest["status"] == "ok"], rest[rest["status"] != "ok"]
        half = max(1, per_class // 2)
        out[str(name)] = {"errors": errors, "borderline": pd.concat([dropped.tail(half), kept.head(half)])}
    return out


def preview(row: pd.Series, root: Path, side: int = 96, frames: int = 8) -> str:
    """A data: URI: an image as JPEG, a video as an animated GIF of `frames` frames across it."""
    buf = io.BytesIO()
    if row["media"] == "image":
        Image.fromarray(thumb(root / row["path"], row, side)).save(buf, format="JPEG", quality=85)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    try:
        n = int(row["frames"]) if pd.notna(row["frames"]) else media.probe(root / row["path"]).frames
        clip = media.read_frames(root / row["path"], np.linspace(0, n - 1, frames).round().astype(int),
                                 size=(side, side))
    except media.MediaError:
        clip = np.zeros((1, side, side, 3), np.uint8)
    images = [Image.fromarray(f) for f in clip]
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=180, loop=0)
    return "data:image/gif;base64," + base64.b64encode(buf.getvalue()).decode()


def _text(v) -> str:
    return "" if v is None or (not isinstance(v, (list, tuple)) and pd.isna(v)) else html.escape(str(v))


def _card(row: pd.Series, root: Path, classes: dict[int, str]) -> str:
    status = "kept" if row["status"] == "ok" else f"rejected ({mf.error_code(row['error'])})"
    facts = [f"p(label) {float(row['teacher_score']):.3f}", status]
    flag = row.get("label_issue", pd.NA)
    if pd.notna(row.get("suggested_label_id", pd.NA)):
        facts.append(f"suggested: {_text(row['suggested_label'])} (p {float(row['suggested_p']):.3f})"
                     + (" · label issue" if pd.notna(flag) and flag else ""))
    lineage = [f"{_text(row['source'])} · query {_text(row['query'])}", _text(row["url"])]
    if pd.notna(row["parent_id"]):
        lineage.append(f"cut from {_text(row['parent_id'])} at {row['start_s']:.1f}–{row['end_s']:.1f} s")
    if pd.notna(row.get("original_label", pd.NA)):
        lineage.append(f"relabelled from {_text(row['original_label'])}")
    sugg = row.get("suggested_label_id", pd.NA)
    options = "".join(f"<option value='{k}'{' selected' if pd.notna(sugg) and int(sugg) == k else ''}>"
                      f"{html.escape(v)}</option>" for k, v in sorted(classes.items()))
    iid = _text(row["item_id"])
    radios = "".join(f"<label><input type='radio' name='d-{iid}' value='{d}'> {d}</label> " for d in DECISIONS)
    return (f"<div class='item' data-id='{iid}'><img alt='{iid}' src='{preview(row, root)}'>"
            f"<div class='id'>{iid}</div><div>{' · '.join(facts)}</div>"
            f"<div class='lineage'>{'<br>'.join(x for x in lineage if x)}</div>"
            f"<div class='decide'>{radios}<select>{options}</select></div></div>")


CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1300px;color:#222}h2{border-bottom:1px solid
#ccc;margin-top:1.4em}h3{font-size:1em;color:#555}.row{display:flex;flex-wrap:wrap;gap:.6em}.item{border:1px solid #ddd;
padding:.4em;width:190px;font-size:.75em}.item img{width:96px;height:96px;image-rendering:pixelated;display:block}
.id{font-family:monospace}.lineage{color:#666;word-break:break-all}.item.decided{background:#eef6ee}
#bar{position:sticky;top:0;background:#fff;padding:.4em 0;border-bottom:1px solid #ccc}textarea{width:100%;height:5em}"""

SCRIPT = """const decisions = new Map();
function csvField(s){return /[",\\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;}
function render(){
  const lines = [HEADER];
  for (const [id, d] of decisions) lines.push([id, d.decision, d.decision === 'relabel' ? csvField(CLASSES[d.label]) : '']
                                               .join(','));
  document.getElementById('csv').textContent = lines.join('\\n') + '\\n';   // readonly: its value follows
  document.getElementById('count').textContent = decisions.size;
  history.replaceState(null, '', '#d=' + [...decisions].map(([id, d]) =>
    id + ':' + d.decision + (d.decision === 'relabel' ? ':' + d.label : '')).join(','));
  for (const el of document.querySelectorAll('.item')) el.classList.toggle('decided', decisions.has(el.dataset.id));
}
function decide(item){
  const chosen = item.querySelector('input:checked');
  if (!chosen) return;
  decisions.set(item.dataset.id, {decision: chosen.value, label: item.querySelector('select').value});
  render();
}
for (const item of document.querySelectorAll('.item')) item.addEventListener('change', () => decide(item));
for (const part of decodeURIComponent(location.hash.replace(/^#d=/, '')).split(',').filter(Boolean)) {
  const [id, decision, label] = part.split(':');
  const item = document.querySelector(`.item[data-id="${id}"]`);
  if (!item) continue;
  const radio = item.querySelector(`input[value="${decision}"]`);
  if (radio) radio.checked = true;
  if (label !== undefined) item.querySelector('select').value = label;
  decide(item);
}
render();
document.getElementById('save').addEventListener('click', () => {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([document.getElementById('csv').textContent], {type: 'text/csv'}));
  a.download = 'decisions.csv';
  a.click();
});"""


def review_page(df: pd.DataFrame, root: str | Path, out: str | Path, per_class: int = 6,
                title: str = "curate review") -> Path:
    """Write the review page for a filtered manifest (its files under root)."""
    root, classes = Path(root), manifest_classes(df)
    sections = []
    for name, parts in picks(df, per_class).items():
        body = "".join(f"<h3>{what}</h3><div class='row'>" + "".join(_card(r, root, classes) for _, r in rows.iterrows())
                       + "</div>" for what, rows in (("suspected label errors", parts["errors"]),
                                                     ("nearest the keep threshold", parts["borderline"])) if len(rows))
        sections.append(f"<section class='class' data-class='{html.escape(name)}'><h2>{html.escape(name)}</h2>"
                        f"{body}</section>")
    names = json.dumps({str(k): v for k, v in classes.items()})
    script = f"const HEADER = {json.dumps(CSV_HEADER)};\nconst CLASSES = {names};\n" + SCRIPT
    bar = ("<div id='bar'>decided: <b id='count'>0</b> <button id='save'>download decisions.csv</button> — then "
           "<code>curate filter MANIFEST --decisions decisions.csv</code><textarea id='csv' readonly></textarea></div>")
    text = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style>"
            f"</head><body><h1>{html.escape(title)}</h1>{bar}{''.join(sections)}<script>{script}</script></body></html>")
    return write_text(Path(out), text)
