"""`curate dedup`: web rows near-duplicating target val/test rows, and copies inside the web (curate/clean/dedup.py)."""
from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from curate.cli.executor import executor_options, executor_summary


@click.command("dedup")
@click.argument("manifest_path", metavar="WEB_MANIFEST", type=click.Path(exists=True, path_type=Path))
@click.option("--target", "target_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="The target manifest; its val and test rows are what web rows must not copy.")
@click.option("--embed", type=click.Choice(["pixels", "teacher"]), default="pixels", show_default=True,
              help="pixels: standardised 16x16 thumbnails of 4 frames per video (frame-level, robust to re-encodes, "
                   "small crops and colour shifts); teacher: the --teacher checkpoint's penultimate embedding.")
@click.option("--teacher", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Checkpoint for --embed teacher.")
@click.option("--threshold", type=float, default=None,
              help="Cosine similarity at which an item is a duplicate (default: 0.75 for pixels, 0.95 for teacher).")
@click.option("--within/--no-within", default=True, show_default=True,
              help="Also collapse near-duplicates inside the web manifest to its best-scored row.")
@click.option("--index", "index_kind", type=click.Choice(["auto", "flat", "ivf", "cluster"]), default="auto",
              show_default=True,
              help="auto: against val/test exact up to 200k indexed vectors, IVF beyond; inside the web exact up to "
                   "20k vectors, beyond that k-means clusters compared exactly inside each cluster and its vectors' "
                   "6 nearest clusters (cluster). GPU when faiss sees one.")
@click.option("--out", type=click.Path(path_type=Path),
              help="Output manifest (default: rewrite WEB_MANIFEST in place, atomically).")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), help="Root of WEB_MANIFEST's paths.")
@click.option("--target-root", type=click.Path(file_okay=False, path_type=Path), help="Root of --target's paths.")
@click.option("--device", default=None, help="For --embed teacher: cpu, cuda, ... (default: cuda when present).")
@executor_options(shard_size=64)
def dedup_cmd(manifest_path: Path, target_path: Path, embed: str, teacher: Path | None, threshold: float | None,
              within: bool, index_kind: str, out: Path | None, data_root: Path | None, target_root: Path | None,
              device: str | None, executor: str, address: str | None, shard_size: int, workers: int) -> None:
    """Remove web rows that near-duplicate the target's evaluation rows (OmniSource's decontamination).

    \b
    Rows too close to a val/test row: status=rejected, error=duplicate_of_val, dup_of=<target item>,
    dup_sim=<cosine>. Groups of web rows close to each other keep the row the teacher scored highest
    (others: near_duplicate, dup_of=<kept row>). Every checked row keeps its best similarity in dup_sim,
    so a rerun only checks new rows; item vectors are cached in OUT.dedup_emb.parquet, shard by shard as
    they are embedded (--executor: here, spawned processes or a Ray cluster; the clustered search inside
    the web runs there too, from files next to OUT that every worker must reach).

    \b
    Example:
      curate dedup web.filtered.parquet --target world/manifests/target.parquet
    """
    from curate.clean.dedup import PixelEmbedder, TeacherEmbedder, dedup_manifest
    from curate.clean.teacher import load_teacher
    from curate.core import manifest as mf
    from curate.core.executor import ExecutorError, ExecutorSpec
    from curate.core.manifest import find_data_root
    from trainers.checkpoint import CheckpointError
    from trainers.config import ConfigError

    if embed == "teacher" and not teacher:
        raise click.UsageError("--embed teacher needs --teacher CHECKPOINT")
    con = Console()
    out = out or manifest_path
    t0 = time.perf_counter()
    try:
        web = mf.read(manifest_path)
        target = mf.read(target_path)
        web_root = find_data_root(manifest_path, web, data_root)
        tgt_root = find_data_root(target_path, target, target_root)
        embedder = TeacherEmbedder(load_teacher(teacher, device)) if embed == "teacher" else PixelEmbedder()
        thr = threshold if threshold is not None else (0.95 if embed == "teacher" else 0.75)
        cache = out.with_name(out.name.removesuffix(".parquet") + ".dedup_emb.parquet")
        with con.status("dedup") as status:
            df, rep = dedup_manifest(web, target, web_root, tgt_root, embedder, thr, within, cache, index_kind,
                                     progress=lambda msg: status.update(msg),
                                     executor=ExecutorSpec(executor, address, shard_size, workers))
        mf.write(df, out, {**mf.read_metadata(manifest_path), "data_root": str(Path(web_root).resolve())})
    except (ConfigError, CheckpointError, ExecutorError, mf.ManifestError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    for what, run in rep.runs.items():
        executor_summary(con, run, what)
    con.print(f"checked {rep.checked} web rows against {rep.against} val/test rows ({rep.index}), cosine >= {thr:g}")
    if rep.within_index:
        con.print(f"inside the web: {rep.within_index}")
    con.print(f"duplicate_of_val {rep.of_val}, near_duplicate {rep.within}")
    if rep.hits:
        t = Table(title="hits", title_justify="left", show_edge=False)
        for c in ("web item", "matches", "cosine"):
            t.add_column(c)
        for a, b, s in sorted(rep.hits, key=lambda h: -h[2])[:20]:
            t.add_row(a, b, f"{s:.3f}")
        con.print(t)
    con.print(f"{out} in {time.perf_counter() - t0:.1f} s")
    if rep.failed_shards:
        raise SystemExit(1)
