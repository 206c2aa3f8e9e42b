"""`curate info MANIFEST`: counts by source, split, status, error code, and the label histogram."""
from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table


@click.command()
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of tables.")
@click.option("--top", default=30, show_default=True, help="Labels shown in the histogram.")
def info(manifest_path: str, as_json: bool, top: int) -> None:
    """Summarise a manifest: rows by source, split, status and error code, and a label histogram."""
    from curate.core import manifest as mf
    from curate.core import store

    try:
        df = mf.read(manifest_path)
    except mf.ManifestError as exc:
        raise click.ClickException(str(exc)) from exc
    s = mf.summary(df)
    if as_json:
        click.echo(json.dumps(s, indent=2, sort_keys=True))
        return
    con = Console()
    con.print(f"[bold]{manifest_path}[/]: {s['rows']} rows, {s['bytes'] / 1e6:.1f} MB, "
              f"{s['duration_s'] / 60:.1f} min of video")
    if store.is_folder(manifest_path):
        con.print(f"stored as a folder of {len(store.parts(manifest_path))} part file(s) (curate manifest compact "
                  "merges them)", highlight=False)
    roots = mf.data_roots(manifest_path)
    meta = mf.read_metadata(manifest_path)
    if roots is not None:
        folders, by_source = roots
        for name, folder in folders.items():
            owned = sorted(s for s, n in by_source.items() if n == name)
            con.print(f"data root {name} = {folder} ({', '.join(owned)}; re-point with --data-root {name}=PATH)",
                      highlight=False, soft_wrap=True)
    elif meta.get("data_root"):
        con.print(f"data root = {meta['data_root']}", highlight=False, soft_wrap=True)
    for key in ("source", "split", "media", "status", "error"):
        if not s[key]:
            continue
        t = Table(title=f"by {key}", title_justify="left", show_edge=False)
        t.add_column(key)
        t.add_column("rows", justify="right")
        for k, v in sorted(s[key].items(), key=lambda kv: -kv[1]):
            t.add_row(k, str(v))
        con.print(t)
    labels = sorted(s["label"].items(), key=lambda kv: -kv[1])
    if labels:
        width = max(v for _, v in labels)
        t = Table(title=f"labels ({len(labels)} classes, top {min(top, len(labels))})", title_justify="left",
                  show_edge=False)
        t.add_column("label")
        t.add_column("rows", justify="right")
        t.add_column("")
        for k, v in labels[:top]:
            t.add_row(k, str(v), "█" * max(1, round(30 * v / width)))
        con.print(t)
