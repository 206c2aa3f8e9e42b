"""`curate filter`: cheap filters, teacher scoring, keep rules and clips of untrimmed videos (curate/clean/filter.py)."""
from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from curate.cli.executor import executor_options, executor_summary


@click.command("filter")
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(exists=True, path_type=Path))
@click.option("--teacher", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Checkpoint scoring every row (images and videos) unless --image-teacher/--video-teacher say "
                   "otherwise.")
@click.option("--image-teacher", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              help="Checkpoint for image rows (OmniSource: a 2D TSN). Repeat it for an ensemble (geometric mean of "
                   "the members' probabilities; they must share their classes).")
@click.option("--video-teacher", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              help="Checkpoint for video rows and windows of untrimmed videos (OmniSource: a 3D SlowOnly); "
                   "repeatable like --image-teacher.")
@click.option("--image-views", metavar="CLIPSxCROPS", default=None,
              help="Test views for image rows instead of the teachers' own, e.g. 1x10 (TenCrop: five crops and their "
                   "mirror images, ~10x the model work; on the demo world +0.02-0.03 precision at recall 0.8).")
@click.option("--video-views", metavar="CLIPSxCROPS", default=None,
              help="Test views for video rows and windows, e.g. 3x3; default: the teachers' own.")
@click.option("--class-map", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON/YAML {teacher class name or index: manifest class name or label id}; default: match by name.")
@click.option("--out", type=click.Path(path_type=Path),
              help="Output manifest (default: MANIFEST's name + .filtered.parquet). An existing one is resumed.")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), help="Folder the paths are relative to.")
@click.option("--threshold", type=float, help="Keep rows whose own-label probability is at least this.")
@click.option("--relative", type=float,
              help="Keep rows whose own-label probability is at least this fraction of the median over their class's "
                   "rows of the same media (a class the teacher is less sure of keeps its share; e.g. 0.6).")
@click.option("--top-k", type=int, help="Keep the k highest-scored rows of each class.")
@click.option("--top-frac", type=float, help="Keep this fraction of each class's rows, best first.")
@click.option("--match/--no-match", default=True, show_default=True,
              help="Keep only rows whose teacher top-1 is their own label (OmniSource's rule).")
@click.option("--match-k", type=click.IntRange(1, 5), default=1, show_default=True,
              help="With --match: accept the own label anywhere in the teacher's top K (2 suits a 2D teacher on "
                   "classes told apart only by motion order).")
@click.option("--cheap/--no-cheap", default=True, show_default=True,
              help="Resolution, duration, black, frozen and near-static checks before the teacher.")
@click.option("--min-side", type=int, default=32, show_default=True, help="Shorter side in pixels at least.")
@click.option("--min-duration", type=float, default=0.5, show_default=True, help="Seconds at least (videos).")
@click.option("--max-duration", type=float, default=None, help="Seconds at most (videos; untrimmed ones aside).")
@click.option("--untrimmed-over", type=float, default=None,
              help="Videos longer than this many seconds are untrimmed: scored window by window and cut into clips.")
@click.option("--window", "window_s", type=float, default=10.0, show_default=True, help="Window length in seconds.")
@click.option("--stride", "stride_s", type=float, default=None, help="Window stride in seconds (default: --window).")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True,
              help="--executor local: decode processes (DataLoader workers) of the one teacher here, and threads of "
                   "the cheap filters; processes: worker processes; ray: CPUs of the local Ray cluster started when "
                   "--address is not given (each Ray task decodes in its own process, a teacher per worker).")
@executor_options(workers=False, shard_size=256)
@click.option("--device", default=None, help="cpu, cuda, ... (default: cuda when present; bf16 autocast there).")
@click.option("--plots", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the score histograms (default: next to the output manifest).")
@click.option("--pseudo-mp4", type=click.Choice(["static", "moving"]), default=None,
              help="Also write every kept image as an mp4 pseudo-video row (source 'pseudo', parent_id) to inspect "
                   "what 3D students see (the trainers make these on the fly; this is for looking at them).")
@click.option("--shots", type=click.Choice(["content", "adaptive"]), is_flag=False, flag_value="content", default=None,
              help="Detect the shots of untrimmed videos first (PySceneDetect; content: hard cuts, adaptive: cuts "
                   "relative to the motion around them; fades to black too): no window and no clip crosses a shot "
                   "boundary, and each shot becomes a row (source shot, parent_id, span).")
@click.option("--shot-threshold", type=float, default=None,
              help="The shot detector's threshold (content: 27, adaptive: 3 by default).")
@click.option("--label-issues", is_flag=True,
              help="Confident learning (Cleanlab) on the teachers' out-of-sample probabilities: per row label_issue, "
                   "self_confidence, suggested_label(_id), suggested_p; per class and query the estimated noise rate. "
                   "Refused for teachers that trained on the web rows (use cross-fitted or target-only teachers).")
@click.option("--relabel", "relabel_min_p", type=click.FloatRange(0, 1, min_open=True), default=None, metavar="MIN_P",
              help="Keep a row flagged as a label issue under its suggested label when that label's probability is "
                   "at least MIN_P (implies --label-issues); the crawl's label goes to original_label(_id).")
@click.option("--decisions", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A reviewer's decisions CSV (item_id,decision,label; `curate review` writes it): keep, drop "
                   "(review_drop) or relabel, applied after the rules. Without a teacher only the decisions are applied.")
@click.option("--dry-run", is_flag=True, help="Score and print what each rule would keep per class; nothing is "
                                              "written, rejected or cut (no label issues, no decisions).")
def filter_cmd(manifest_path: Path, teacher: Path | None, image_teacher: tuple[Path, ...],
               video_teacher: tuple[Path, ...], image_views: str | None, video_views: str | None,
               class_map: Path | None, out: Path | None, data_root: Path | None,
               threshold: float | None, relative: float | None, top_k: int | None, top_frac: float | None,
               match: bool, match_k: int,
               cheap: bool, min_side: int, min_duration: float, max_duration: float | None,
               untrimmed_over: float | None, window_s: float, stride_s: float | None, batch_size: int, workers: int,
               device: str | None, plots: Path | None, pseudo_mp4: str | None, shots: str | None,
               shot_threshold: float | None, label_issues: bool, relabel_min_p: float | None, decisions: Path | None,
               dry_run: bool, executor: str, address: str | None, shard_size: int) -> None:
    """Filter MANIFEST's web rows with a teacher trained on the target set (OmniSource).

    \b
    Cheap checks run first; survivors are scored by the teacher for their media (probability of the row's
    own label, top-1, top-5, embeddings to OUT.emb.parquet); the keep rules then reject what they drop
    (status=rejected, error=teacher_low or teacher_mismatch; rows are never deleted). Videos longer than
    --untrimmed-over are scored in windows; kept windows are merged and cut into clip rows (parent_id).
    Reruns skip rows already scored by the same checkpoints and views. Cheap checks and scoring run in shards
    (--executor: here, spawned processes, or a Ray cluster, a GPU per task when it has GPUs), each committed to OUT
    as it finishes.

    \b
    Examples:
      curate filter web.parquet --teacher runs/tsn/best.pt --threshold 0.3
      curate filter web.parquet --image-teacher tsn.pt --video-teacher slowonly.pt --top-frac 0.5 --dry-run
      curate filter web.parquet --image-teacher tsn.pt --image-teacher slowonly.pt --video-teacher slowonly.pt \\
          --image-views 1x10
      curate filter web.parquet --image-teacher f0.pt --image-teacher f1.pt --video-teacher slowonly.pt \\
          --untrimmed-over 4 --shots --relabel 0.8
      curate filter web.filtered.parquet --decisions decisions.csv
    """
    from curate.clean.cheap import CheapRules
    from curate.clean.classes import read_mapping
    from curate.clean.filter import KeepRules, filter_manifest, resumed
    from curate.clean.plots import plot_extremes, plot_scores
    from curate.clean.review import apply_decisions, read_decisions
    from curate.clean.shots import ShotRules
    from curate.clean.teacher import teachers_from_args
    from curate.core import manifest as mf
    from curate.core import store
    from curate.core.executor import ExecutorError, ExecutorSpec
    from curate.core.manifest import find_data_root
    from trainers.checkpoint import CheckpointError
    from trainers.config import ConfigError

    con = Console()
    out = out or manifest_path.with_name(manifest_path.name.removesuffix(".parquet") + ".filtered.parquet")
    t0 = time.perf_counter()
    if not (teacher or image_teacher or video_teacher):
        if decisions is None:
            raise click.UsageError("give --teacher, or --image-teacher and/or --video-teacher (or only --decisions)")
        try:
            df, done = apply_decisions(mf.read(manifest_path), read_decisions(decisions))
            mf.write(df, out, mf.read_metadata(manifest_path))
        except (mf.ManifestError, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc
        con.print("decisions applied: " + ", ".join(f"{k} {v}" for k, v in done.items()) + f"; {out}",
                  highlight=False, soft_wrap=True)
        return
    try:
        df = mf.read(manifest_path)
        root = find_data_root(manifest_path, df, data_root)
        resume = mf.exists(out)
        if resume:
            df = resumed(df, mf.read(out))
            con.print(f"resuming from {out}: its scores are reused, its rules applied again")
        both = [teacher] if teacher else []
        teachers = teachers_from_args(list(image_teacher) or both, list(video_teacher) or both, device,
                                      {"image": image_views, "video": video_views})
        rules = KeepRules(threshold, relative, top_k, top_frac, match, match_k)
        cheap_rules = CheapRules(min_side=min_side, min_duration_s=min_duration, max_duration_s=max_duration) \
            if cheap else None
        meta = {**mf.read_metadata(manifest_path), "data_root": str(Path(root).resolve())}
        commit = lambda rows: mf.commit(out, rows, meta)  # noqa: E731   O(rows): one part of the folder at out
        if not dry_run and not resume:
            commit(df)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=con, transient=True) as bar:
            tasks: dict[str, int] = {}

            def progress(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=total)
                bar.update(tasks[name], completed=done, total=total)

            result = filter_manifest(df, root, teachers, rules, cheap_rules, read_mapping(class_map) if class_map
                                     else None, untrimmed_over, window_s, stride_s, batch_size, workers,
                                     out.with_name(out.name.removesuffix(".parquet") + ".emb.parquet"), dry_run,
                                     commit, progress, ShotRules(shots, shot_threshold) if shots else None,
                                     label_issues, relabel_min_p, read_decisions(decisions) if decisions else None,
                                     ExecutorSpec(executor, address, shard_size, max(1, workers)))
        if pseudo_mp4 and not dry_run:
            from curate.media.pseudo import write_pseudo_rows

            df = result.manifest
            done = set(df.loc[df["source"] == "pseudo", "parent_id"])
            pseudo = write_pseudo_rows(df[~df["item_id"].isin(done) & df["teacher_score"].notna()], root, pseudo_mp4)
            result.manifest = mf.upsert(df, pseudo)
            commit(pseudo)
            con.print(f"pseudo-videos ({pseudo_mp4}): {len(pseudo)} written")
        if not dry_run:
            store.compact(out)      # one file again: exact for any Parquet reader
    except (ConfigError, CheckpointError, ExecutorError, mf.ManifestError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if result.scores.run is not None:
        executor_summary(con, result.scores.run, "teacher scoring")
    _summary(con, result, rules, dry_run)
    if not dry_run:
        plot_dir = plots or out.parent / (out.name.removesuffix(".parquet") + "_plots")
        grid = plot_extremes(result.manifest, root, plot_dir)
        for p in [*plot_scores(result.manifest, plot_dir), *([grid] if grid else [])]:
            con.print(f"  {p}")
    con.print(f"dry run: nothing written ({time.perf_counter() - t0:.1f} s)" if dry_run else
              f"{out} in {time.perf_counter() - t0:.1f} s")
    if result.failed_shards:
        raise SystemExit(1)


def _summary(con: Console, r, rules, dry_run: bool) -> None:
    s = r.scores
    con.print(f"teacher: scored {sum(s.scored.values())} rows ({', '.join(f'{k} {v}' for k, v in s.scored.items())}), "
              f"reused {sum(s.reused.values())}, failed to decode {s.failed}, no teacher for their media "
              f"{s.no_teacher}, {s.rows_per_s():.1f} rows/s")
    for kind in s.unmatched_labels:
        if s.unmatched_labels[kind]:
            con.print(f"[yellow]{kind} teacher lacks classes (rows not scored): {s.unmatched_labels[kind]}[/]")
        if s.unmatched_teacher[kind]:
            con.print(f"{kind} teacher classes with no class here: {len(s.unmatched_teacher[kind])}")
    if r.cheap.checked:
        cost = r.cheap.cost_per_kept()
        con.print(f"cheap filters: checked {r.cheap.checked}, kept {r.cheap.kept}; rejected "
                  + ", ".join(f"{k} {v}" for k, v in r.cheap.rejected.items() if v) + "; seconds per kept item "
                  + ", ".join(f"{k} {v:.4f}" for k, v in cost.items()))
    if dry_run and r.dry_run is not None:
        t = Table(title=f"rows each rule would keep ({rules.describe()})", title_justify="left",
                  show_edge=False)
        for c in r.dry_run.columns:
            t.add_column(str(c), justify="left" if c == "class" else "right")
        for row in r.dry_run.itertuples(index=False):
            t.add_row(*map(str, row))
        con.print(t)
        return
    con.print("rules removed: " + (", ".join(f"{k} {v}" for k, v in r.removed.items()) or "nothing")
              + f" (keep: {rules.describe()})")
    if r.clips:
        con.print(f"untrimmed: {r.clips['videos']} videos" + (f", {r.clips['shots']} shots" if "shots" in r.clips else "")
                  + f", {r.clips['windows_kept']}/{r.clips['windows']} windows kept, {r.clips['clips']} clips cut")
    df = r.manifest
    if "label_issue" in df and df["label_issue"].notna().any():
        from curate.clean.label_issues import noise_rates

        con.print(f"label issues: {int(df['label_issue'].fillna(False).sum())} of {int(df['label_issue'].notna().sum())} "
                  f"judged rows flagged; relabelled (kept under the suggested label): {r.relabelled}")
        for by in ("label", "query"):
            t = Table(title=f"estimated noise rate per {by}", title_justify="left", show_edge=False)
            rates = noise_rates(df, by)
            for c in rates.columns:
                t.add_column(c, justify="left" if c == by else "right")
            for row in rates.itertuples(index=False):
                t.add_row(str(row[0]), str(row[1]), str(row[2]), f"{row[3]:.2f}")
            con.print(t)
    if r.decided:
        con.print("decisions applied: " + ", ".join(f"{k} {v}" for k, v in r.decided.items()))
    t = Table(title="kept per class", title_justify="left", show_edge=False)
    for c in ("class", "kept", "scored", "fraction"):
        t.add_column(c, justify="left" if c == "class" else "right")
    scored = df[df["teacher_score"].notna() & df["source"].ne("clip")]
    for name, rows in scored.groupby("label"):
        kept = int((rows["status"] == "ok").sum())
        t.add_row(str(name), str(kept), str(len(rows)), f"{kept / len(rows):.2f}")
    con.print(t)
    con.print("status: " + ", ".join(f"{k} {v}" for k, v in df["status"].value_counts().items()))
