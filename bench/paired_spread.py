"""Which test-time choice makes Table 1's paired verdicts steadier: the spread of the paired differences between
conditions (over seeds) when the demo's students are scored with their last checkpoint or their best-on-val one,
on one view or on several temporal clips. Scores the finished student runs of a demo folder again (no training).

Run: PYTHONPATH=. python bench/paired_spread.py demo_out [--views 1x1 3x1] [--splits test]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from curate.demo.loop import TARGET_ONLY, UNFILTERED, filtered
from curate.demo.verdicts import compare
from trainers.evaluate import evaluate_checkpoint

PAIRS = ((filtered(1), TARGET_ONLY), (filtered(1), UNFILTERED))


def student_runs(demo: Path) -> pd.DataFrame:
    """condition, model, seed and folder of every finished student run (from its run.json and folder name)."""
    rows = []
    for result in sorted((demo / "students").glob("*/*/result.json")):
        run = result.parent
        model, seed = run.name.split("_e")[0], int(run.name.rsplit("_s", 1)[1])
        named = {"target_only": TARGET_ONLY, "web_unfiltered": UNFILTERED}
        cond = named.get(run.parent.name) or filtered(int(run.parent.name.rsplit("_", 1)[1]))
        rows.append({"condition": cond, "model": model, "seed": seed, "run": run})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("demo", type=Path)
    ap.add_argument("--views", nargs="+", default=["1x1", "3x1"])
    ap.add_argument("--split", default="test")
    args = ap.parse_args()
    runs = student_runs(args.demo)
    target = args.demo / "manifests" / "target.parquet"
    scored = []
    for r in runs.itertuples():
        for ckpt in ("last", "best", "avg"):
            if not (r.run / f"{ckpt}.pt").exists():     # best.pt only where the run validated while training
                continue
            for views in args.views:
                ev = evaluate_checkpoint(r.run / f"{ckpt}.pt", target, args.split, views, device="cpu")
                scored.append({"condition": r.condition, "model": r.model, "seed": r.seed, "choice": f"{ckpt} {views}",
                               "top1": ev.metrics["top1"]})
                print(json.dumps(scored[-1]), flush=True)
    table = pd.DataFrame(scored)
    out = []
    for (choice, model), g in table.groupby(["choice", "model"]):
        for a, b in PAIRS:
            p = compare(g, model, a, b)
            out.append({"choice": choice, "model": model, "comparison": f"{a} vs {b}", "pairs": p.n,
                        "mean": round(p.mean, 3), "half-width": round(p.detectable, 3), "verdict": p.verdict})
    print(pd.DataFrame(out).sort_values(["model", "comparison", "half-width"]).to_string(index=False))


if __name__ == "__main__":
    main()
