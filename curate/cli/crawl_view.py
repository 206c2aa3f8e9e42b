"""What `curate crawl` shows: the dry-run plan, a rich progress bar per source, the closing summary table."""
from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd


class Progressor:
    """Context manager whose update(event, rows, n) drives one progress bar per source."""

    def __init__(self, console: Console, disable: bool = False):
        self.progress = Progress(TextColumn("{task.description:>12}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("ok {task.fields[ok]} failed {task.fields[failed]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=disable)
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> "Progressor":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def update(self, event: str, rows: pd.DataFrame | None, n: int) -> None:

        if event == "start":
            for source, count in rows["source"].value_counts().sort_index().items():
                self.tasks[source] = self.progress.add_task(source, total=int(count), ok=0, failed=0)
        elif event == "done":
            for source, part in rows.groupby("source"):
                task = self.tasks.get(source)
                if task is not None:
                    t = self.progress.tasks[task]
                    self.progress.update(task, advance=len(part), ok=t.fields["ok"] + int((part["status"] == "ok").sum()),
                                         failed=t.fields["failed"] + int((part["status"] != "ok").sum()))


def print_plan(console: Console, res) -> None:
    """Rows per source and class known offline, and the queries a real run would send."""
    import pandas as pd

    df, pctx = res.df, res.plan
    table = Table(title=f"plan (dry run, nothing fetched) → {res.manifest}")
    for col in ("source", "split", "classes", "rows", "no label"):
        table.add_column(col, justify="left" if col in ("source", "split") else "right")
    if len(df):
        g = df.assign(unlabelled=df["label"].isna()).groupby(["source", df["split"].fillna("-")]).agg(
            classes=("label", "nunique"), rows=("item_id", "size"), unlabelled=("unlabelled", "sum"))
        for (source, split), r in g.iterrows():
            table.add_row(source, split, str(r["classes"]), str(r["rows"]), str(int(r["unlabelled"])))
    console.print(table)
    q = pd.DataFrame(pctx.queries)
    if len(q):
        qt = Table(title="queries a crawl would send")
        for col in ("source", "classes", "queries", "up to rows"):
            qt.add_column(col, justify="left" if col == "source" else "right")
        for source, part in q.groupby("source", sort=False):
            quota = part.groupby("label")["quota"].sum() if part["quota"].notna().any() else None
            qt.add_row(source, str(part["label"].nunique()), str(len(part)),
                       "-" if quota is None else str(int(quota.sum())))
        console.print(qt)
    for note in pctx.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)


def print_summary(console: Console, res) -> None:
    """Rows by source × status × error code with bytes, then throughput and where things went."""
    s = res.stats
    table = Table(title=f"crawl summary: {res.manifest}")
    for col in ("source", "status", "code", "rows", "MB"):
        table.add_column(col, justify="right" if col in ("rows", "MB") else "left")
    for r in s["by_source_status_code"]:
        table.add_row(r["source"], r["status"], r["code"], str(r["rows"]), f"{(r['bytes'] or 0) / 1e6:.1f}")
    console.print(table)
    console.print("by split: " + "; ".join(f"{k} {v['rows']} rows ({v['ok']} ok"
                                           + (f", {v['no_label']} without a label" if v["no_label"] else "") + ")"
                                           for k, v in s["by_split"].items()), highlight=False)
    console.print(f"{s['fetched_this_run']} rows attempted this run, {s['ok_this_run']} ok, in {s['seconds']:.1f} s "
                  f"({s['items_per_s'] or 0:.1f} items/s); {s['rows']} rows in the manifest; "
                  f"stats in {res.manifest}.stats.json, attempts in {res.manifest}.attempts.jsonl")


def print_quotas(console: Console, shares: pd.DataFrame | None) -> None:
    """The budget's shares per source and query template (summed over classes), with the keep rates they followed."""
    if shares is None:
        return
    g = shares.groupby(["source name", "template"], sort=False)
    t = Table(title=f"budget {int(shares['quota'].sum())} rows shared out per source x class x query",
              title_justify="left", show_edge=False)
    for c in ("source", "query", "classes", "judged", "kept", "keep rate (smoothed)", "quota"):
        t.add_column(c, justify="left" if c in ("source", "query") else "right")
    for (name, template), rows in g:
        t.add_row(str(name), str(template), str(len(rows)), str(int(rows["judged"].sum())), str(int(rows["kept"].sum())),
                  f"{rows['rate'].mean():.2f}", str(int(rows["quota"].sum())))
    console.print(t)
