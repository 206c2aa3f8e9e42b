"""What the demo loop found, as tables (DataFrames the terminal and the HTML both show) and one self-contained
report.html (inline CSS, PNGs as base64): counts, dedup hits, filter quality against the world's truth, Table 1,
temporal-order pairs, per-level accuracy, learning curves, confusion matrices, efficiency, localization, lineage."""
from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from curate.clean.filter import AT_RECALL, TARGET_PRECISION, precision_recall
from curate.core.files import save_figure, write_text
from curate.demo.loop import CROSS_FIT_RUN, RELABELLED, TARGET_ONLY, UNFILTERED, LoopResult, filtered, pair_scores
from curate.demo.truth import judged_rows
from curate.demo.verdicts import compare


def mean_std(values: pd.Series) -> str:
    """'0.512 ± 0.031 (3)': mean, sample standard deviation and the number of seeds."""
    v = values.dropna().astype(float)
    if v.empty:
        return "–"
    sd = v.std() if len(v) > 1 else 0.0
    return f"{v.mean():.3f} ± {sd:.3f} ({len(v)})"


def rounds_in(runs: pd.DataFrame) -> int:
    """How many filter rounds trained students (filtered(1), filtered(2), ... present without a gap)."""
    have, n = set(runs["condition"]), 0
    while filtered(n + 1) in have:
        n += 1
    return n


def conditions(runs: pd.DataFrame) -> list[str]:
    order = [TARGET_ONLY, UNFILTERED, filtered(1), RELABELLED, *(filtered(k) for k in range(2, rounds_in(runs) + 1))]
    return [c for c in order if c in set(runs["condition"])]


def table_one(runs: pd.DataFrame, metric: str = "top1") -> pd.DataFrame:
    """The seed's Table 1 layout: one row per model, test top-1 per condition (mean ± std over seeds), gains."""
    rows = []
    for model, g in runs.groupby("model", sort=False):
        means = g.groupby("condition")[metric].mean()
        row = {"model": model, **{c: mean_std(g.loc[g["condition"] == c, metric]) for c in conditions(runs)}}
        if filtered(1) in means and TARGET_ONLY in means:
            row["Δ filtered − target only"] = f"{means[filtered(1)] - means[TARGET_ONLY]:+.3f}"
        if filtered(1) in means and UNFILTERED in means:
            row["Δ filtered − unfiltered"] = f"{means[filtered(1)] - means[UNFILTERED]:+.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def verdicts(runs: pd.DataFrame, metric: str = "top1") -> list[str]:
    """Plain sentences on whether each expected effect appeared, on the paired seeds (curate.demo.verdicts)."""
    out = []
    checks = [(filtered(1), TARGET_ONLY, "web data + teacher filtering improve on the target alone"),
              (filtered(1), UNFILTERED, "filtering beats unfiltered web data"),
              (RELABELLED, filtered(1), "relabelled items added to round 1's help"),
              *((filtered(k), filtered(k - 1), f"round {k} (best students of round {k - 1} as teachers) helps")
                for k in range(2, rounds_in(runs) + 1))]
    for model in runs["model"].unique():
        present = set(runs.loc[runs["model"] == model, "condition"])
        for a, b, what in checks:
            if a in present and b in present:
                unit = "top-1" if metric == "top1" else metric.replace("_", " ")
                out.append(f"{model}: {what}? {compare(runs, model, a, b, metric).sentence(unit)}")
    return out


def pair_table(runs: pd.DataFrame, pairs: Sequence[tuple[int, int]], names: Sequence[str]) -> pd.DataFrame:
    """Accuracy inside the classes that differ only in temporal order (chance 0.5), per model and condition."""
    if not pairs:
        return pd.DataFrame()
    acc = with_pair_scores(runs, pairs)
    t = table_one(acc, "pair_acc")
    t.insert(1, "pairs", "; ".join(f"{names[a]} / {names[b]}" for a, b in pairs))
    return t.drop(columns=[c for c in t.columns if c.startswith("Δ")])


def with_pair_scores(runs: pd.DataFrame, pairs: Sequence[tuple[int, int]]) -> pd.DataFrame:
    """runs with the pair_acc and pair_top1 of every run (curate.demo.loop.pair_scores)."""
    scores = pd.DataFrame([pair_scores(r, pairs) for r in runs["run"]], index=runs.index)
    return runs.assign(**{c: scores[c] for c in scores})


def frame_model_note(runs: pd.DataFrame, pairs: Sequence[tuple[int, int]], num_classes: int,
                     frame_models: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """Why a frame model's Table 1 row cannot show web data's effect on this world, with the numbers: its top-1 is
    bounded (it can only guess inside the temporal-order pairs), so its table is also given with each pair counted
    as one class, with paired verdicts there. (table, sentences); empty without frame models or pairs."""
    runs = runs[runs["model"].isin(frame_models)]
    if runs.empty or not pairs:
        return pd.DataFrame(), []
    bound = (num_classes - len(pairs)) / num_classes       # a sure pick of the pair, a coin flip inside it
    table = table_one(with_pair_scores(runs, pairs), "pair_top1")
    said = [f"{len(pairs)} temporal-order pairs hold {2 * len(pairs)} of the {num_classes} classes; a frame model "
            f"averages its frames, so its test top-1 is bounded near {bound:.2f} (a coin flip inside each pair, "
            "the pair accuracy table shows it at chance) whatever data it sees. Counted with each pair as one class, "
            "the effect of web data is measurable:"]
    said += verdicts(with_pair_scores(runs, pairs), "pair_top1")
    return table, said


def level_table(runs: pd.DataFrame) -> pd.DataFrame:
    """FineGym-style per-level test accuracy (element = the class, set, event) per model and condition."""
    cols = [c for c in ("top1", "set_acc", "event_acc") if c in runs]
    g = runs.groupby(["model", "condition"], sort=False)[cols].mean().reset_index()
    return g.rename(columns={"top1": "element", "set_acc": "set", "event_acc": "event"})


def filter_table(result: LoopResult) -> pd.DataFrame:
    rows = []
    for i, r in enumerate(result.rounds, 1):
        q = r["quality"]
        rows.append({"round": i, "image teacher": _short(r["teachers"]["image"]),
                     "video teacher": _short(r["teachers"]["video"]), "judged": q["judged"], "kept": q["kept"],
                     "precision": round(q["precision"], 3), "recall": round(q["recall"], 3),
                     "crawl's clean rate": round(q["base_rate"], 3),
                     **{f"P @ R {AT_RECALL}, {k}": round(v, 3) for k, v in q["at_recall"].items()},
                     "keep rule": r["rule"],
                     "removed by rule": ", ".join(f"{k} {v}" for k, v in r["removed"].items()),
                     "clips cut": r["clips"].get("clips", 0)})
    return pd.DataFrame(rows)


def _short(paths: Sequence[str]) -> str:
    """Checkpoints named by their run folders (condition/run), ' + ' between ensemble members; the members of a
    cross-fit (run names ending _f<fold>of<folds>_s<split>) as one name and their count."""
    names = [f"{Path(p).parent.parent.name}/{Path(p).parent.name}" for p in paths]
    folds = [n for n in names if CROSS_FIT_RUN.search(n)]
    plain = [n for n in names if n not in folds]
    return " + ".join(plain + ([f"{CROSS_FIT_RUN.sub('', folds[0])} x{len(folds)} (cross-fit)"] if folds else []))


def counts_table(web: pd.DataFrame) -> pd.DataFrame:
    t = web.groupby(["source", "status"]).size().unstack(fill_value=0)
    t["total"] = t.sum(axis=1)
    t.columns.name = None
    return t.reset_index()


def dedup_table(result: LoopResult, limit: int = 12) -> pd.DataFrame:
    hits = result.dedup["report"].hits[:limit]
    return pd.DataFrame(hits, columns=["web item", "val/test item", "cosine"]).round(3)


def lineage(result: LoopResult, n: int = 4) -> pd.DataFrame:
    """A few clips the students trained on, traced back: clip -> untrimmed parent -> the query and URL that found it,
    and which runs used them."""
    df = result.rounds[0]["manifest"]
    clips = df[(df["source"] == "clip") & (df["status"] == "ok")].head(n)
    parents = df.set_index("item_id")
    used = {}
    for run in result.runs["run"]:
        f = Path(run) / "web_items.txt"
        if f.exists():
            for iid in set(f.read_text().split()) & set(clips["item_id"]):
                used[iid] = used.get(iid, 0) + 1
    rows = []
    for c in clips.to_dict("records"):
        p = parents.loc[c["parent_id"]]
        rows.append({"clip": c["item_id"], "span (s)": f"{c['start_s']:.1f}–{c['end_s']:.1f}",
                     "teacher p": round(float(c["teacher_score"]), 3), "parent": c["parent_id"],
                     "found by": f"{p['source']} query {p['query']!r}", "url": p["url"],
                     "student runs using it": used.get(c["item_id"], 0)})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------ plots

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_counts(web: pd.DataFrame, path: Path) -> Path:
    plt = _plt()
    t = web.groupby(["source", "status"]).size().unstack(fill_value=0)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    t.plot.barh(stacked=True, ax=ax, color={"ok": "tab:green", "failed": "tab:red", "rejected": "tab:orange"})
    ax.set_xlabel("rows")
    ax.set_title("crawled rows per source and status")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_precision_recall(result: LoopResult, path: Path) -> Path:
    """Precision vs recall of 'label is right' as the score threshold sweeps, per round, with the rule used."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, r in enumerate(result.rounds, 1):
        df, right = r["manifest"], r["right"]
        judged = judged_rows(df, right)
        ax.plot(*precision_recall(df.loc[judged, "teacher_score"].astype(float), right[judged].astype(bool)),
                label=f"round {i}: threshold sweep")
        q = r["quality"]
        ax.plot([q["recall"]], [q["precision"]], "o", ms=8, label=f"round {i}: rule used")
    ax.axhline(result.rounds[0]["quality"]["base_rate"], color="grey", ls="--", lw=0.8, label="keep everything")
    ax.plot([AT_RECALL], [TARGET_PRECISION], "*", color="black", ms=10, label="goal")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("filter quality against the world's truth")
    fig.tight_layout()
    return save_figure(fig, path)


# ------------------------------------------------------------------------------------------------ HTML

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;margin:.3em 0;border:1px solid #eee}.grid{display:flex;flex-wrap:wrap;gap:.6em}
.grid figure{margin:0;flex:1 1 360px}figcaption{font-size:.8em;color:#555}.note{color:#555;font-size:.9em}
li.yes{color:#176117}li.no{color:#a11}"""


def _img(path: Path | None, caption: str = "") -> str:
    if path is None or not Path(path).exists():
        return f"<p class='note'>({html.escape(caption or 'figure')} not drawn)</p>"
    data = base64.b64encode(Path(path).read_bytes()).decode()
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>{cap}</figure>"


def _table(df: pd.DataFrame, table_id: str) -> str:
    if df is None or df.empty:
        return "<p class='note'>(nothing to show)</p>"
    return df.to_html(index=False, border=0, table_id=table_id, na_rep="–", escape=True,
                      float_format=lambda v: f"{v:.3f}")


def _section(title: str, *parts: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n" + "\n".join(parts)


def write_report(path: Path, title: str, summary: Mapping[str, Any],
                 sections: Sequence[tuple[str, Sequence[str]]]) -> Path:
    """report.html: a summary list, then sections of (title, html parts); written atomically."""
    items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in summary.items())
    body = "\n".join(_section(t, *parts) for t, parts in sections)
    text = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><ul>{items}</ul>{body}</body></html>")
    return write_text(path, text)


def verdict_list(lines: Sequence[str]) -> str:
    li = "".join(f"<li class='{'yes' if '? yes' in s else 'no'}'>{html.escape(s)}</li>" for s in lines)
    return f"<ul>{li}</ul>"

