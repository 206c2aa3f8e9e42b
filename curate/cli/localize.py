"""`curate features` and `curate localize`: feature sequences, BMN proposals and AVA-style detection
(see curate/clean/features.py, trainers/localization.py, trainers/detection.py)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

MODEL_OPTIONS = [
    click.option("--tiny", is_flag=True, help="Merge the config's `tiny:` section (a CPU-sized model)."),
    click.option("--set", "sets", multiple=True, metavar="KEY.PATH=VALUE",
                 help="Any config value, e.g. --set schedule.epochs=5. Repeatable."),
    click.option("--resume", is_flag=True, help="Continue the run in OUT from its last.pt."),
    click.option("--device", default=None, help="cpu or cuda (default: cuda when present)."),
]


def _with(options):
    def wrap(f):
        for opt in reversed(options):
            f = opt(f)
        return f
    return wrap


def _table(title: str, metrics: dict) -> Table:
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in metrics.items():
        t.add_row(k, f"{v:.2f}" if isinstance(v, float) else str(v))
    return t


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("manifest", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for features-NNNNN.npy shards and index.parquet (reruns skip videos already there).")
@click.option("--stride-s", type=float, default=None, help="Seconds between snippets (default: half a snippet).")
@click.option("--length", "temporal_length", type=int, default=100, show_default=True,
              help="Positions each sequence is resampled to (BMN's temporal_dim).")
@click.option("--kind", "kinds", multiple=True, help="Only rows of this `kind` (e.g. untrimmed). Repeatable.")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--device", default=None)
def features(checkpoint: Path, manifest: Path, out: Path, stride_s: float | None, temporal_length: int,
             kinds: tuple[str, ...], data_root: Path | None, batch_size: int, device: str | None) -> None:
    """Run a recognizer CHECKPOINT's backbone over the untrimmed videos of MANIFEST: one feature sequence per
    video (item_id), resampled to a fixed length, plus the video's averaged class scores."""
    from curate.clean.features import extract_features

    con = Console()
    t0 = time.perf_counter()
    with Progress(TextColumn("[bold]features"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=con) as bar:
        task = bar.add_task("features", total=None)
        index = extract_features(checkpoint, manifest, out, data_root=data_root, stride_s=stride_s,
                                 temporal_length=temporal_length, kinds=kinds or None, batch_size=batch_size,
                                 device=device, progress=lambda i, n: bar.update(task, completed=i, total=n))
    con.print(f"{len(index)} videos in {out / 'index.parquet'} ({index['snippets'].sum() if len(index) else 0} "
              f"snippets, dim {index['dim'].iloc[0] if len(index) else '-'}, length {temporal_length}) "
              f"in {time.perf_counter() - t0:.1f}s")


@click.group()
def localize() -> None:
    """Temporal action localization (BMN on feature sequences, ActivityNet JSON) and spatio-temporal detection
    (AVA-style CSVs, a 3D backbone with a RoIAlign head)."""


@localize.command("from-world")
@click.argument("world", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True)
def from_world(world: Path, out: Path) -> None:
    """The demo WORLD's ground truth as activitynet.json (long videos), events_to_elements.json (routines) and
    ava/ (train/val CSVs, proposals, exclusions, action list)."""
    from curate.formats import activitynet, ava

    db = activitynet.from_world(world)
    activitynet.write_activitynet(out / "activitynet.json", db)
    ev = activitynet.world_events_to_elements(world)
    activitynet.write_activitynet(out / "events_to_elements.json", ev)
    files = ava.from_world(world, out / "ava")
    Console().print(f"{len(db)} videos ({sum(len(v.annotations) for v in db.values())} segments), {len(ev)} event "
                    f"instances, AVA files: {', '.join(sorted({p.name for p in files.values()}))} under {out}")


@localize.command("train-bmn")
@click.argument("features_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("annotations", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--model", "model_name", default="bmn", show_default=True, help="Bundled config or YAML path.")
@_with(MODEL_OPTIONS)
def train_bmn(features_dir: Path, annotations: Path, out: Path, model_name: str, tiny: bool, sets: tuple[str, ...],
              resume: bool, device: str | None) -> None:
    """Train BMN on FEATURES_DIR (from `curate features`) with ANNOTATIONS (ActivityNet JSON, subsets training /
    validation); then evaluate the last checkpoint on validation (AR@AN, AUC, mAP) into OUT/eval."""
    import numpy as np

    from curate.clean.features import load_features, read_index
    from curate.core.files import FileFormatError
    from curate.formats.activitynet import by_video, read_activitynet
    from trainers.config import ConfigError
    from trainers.localization import evaluate_localizer, load_localizer, train_localizer
    from trainers.train import make_config

    feats = load_features(features_dir)
    if not feats:
        raise click.ClickException(f"{features_dir} holds no features (run `curate features` first)")
    try:
        db = read_activitynet(annotations)
    except FileFormatError as exc:
        raise click.ClickException(str(exc)) from exc
    if not by_video(db, feats):
        raise click.ClickException(f"none of the {len(db)} videos of {annotations} has features in {features_dir} "
                                   "(features are keyed by video id or by the item_id of `curate import activitynet`)")
    dim, length = next(iter(feats.values())).shape
    try:
        cfg = make_config(model_name, tiny, sets, {"model": {"feat_dim": int(dim), "temporal_dim": int(length)}})
        result = train_localizer(cfg, feats, db, out, resume=resume, device=device)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    model, _ = load_localizer(result.last)
    scores = {r.item_id: np.asarray(r.scores) for r in read_index(features_dir).itertuples()}
    metrics = evaluate_localizer(model, feats, db, "validation", scores, out / "eval")
    Console().print(_table(f"BMN, validation ({result.seconds:.0f}s training)", metrics))


@localize.command("eval-bmn")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("features_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("annotations", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--subset", default="validation", show_default=True)
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write proposals.json (ActivityNet results format) and metrics.json here.")
def eval_bmn(checkpoint: Path, features_dir: Path, annotations: Path, subset: str, out: Path | None) -> None:
    """AR@1/5/10/100, AUC (and mAP at tIoU 0.5:0.05:0.95 with the features' video scores) of a BMN CHECKPOINT."""
    import numpy as np

    from curate.clean.features import load_features, read_index
    from trainers.localization import evaluate_localizer, load_localizer

    model, _ = load_localizer(checkpoint)
    scores = {r.item_id: np.asarray(r.scores) for r in read_index(features_dir).itertuples()}
    metrics = evaluate_localizer(model, load_features(features_dir), annotations, subset, scores, out)
    Console().print(_table(f"BMN, {subset}", metrics))


def _ava_files(ava_dir: Path) -> dict[str, Path]:
    from curate.formats import ava

    try:
        return ava.find_files(ava_dir)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc


@localize.command("train-ava")
@click.argument("ava_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data-root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder the videos' paths are relative to.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--model", "model_name", default="slowonly_ava", show_default=True)
@_with(MODEL_OPTIONS)
def train_ava(ava_dir: Path, data_root: Path, out: Path, model_name: str, tiny: bool, sets: tuple[str, ...],
              resume: bool, device: str | None) -> None:
    """Train a detector on AVA_DIR; report validation frame-mAP@0.5 against the class-prior baseline,
    predictions.csv in OUT.

    \b
    AVA_DIR holds the official AVA v2.2 files (ava_{train,val}_v2.2.csv, ava_dense_proposals_{train,val}.FAIR.
    recall_93.9.pkl, ava_{train,val}_excluded_timestamps_v2.2.csv, ava_action_list_v2.2.pbtxt) or the demo's
    (train.csv, val.csv, proposals.csv, exclusions.csv, action_list.pbtxt), and the videos: videos.parquet from
    `curate import ava AVA_DIR --videos MOVIES` then `curate probe AVA_DIR/videos.parquet`, or a videos.csv
    (video_id, path, fps, frames, subset). Timestamps are seconds of each video file (the full movies).
    """
    from curate.formats import ava
    from trainers.config import ConfigError
    from trainers.detection import class_prior, detection_metrics, load_detector, predict_keyframes, train_detector
    from trainers.train import make_config

    files = _ava_files(ava_dir)
    try:
        cfg = make_config(model_name, tiny, sets)
        result, train, val = train_detector(cfg, files, data_root, out, resume=resume, device=device)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    model, _ = load_detector(result.last)
    pred = predict_keyframes(model, val)
    ava.write_csv(pred, out / "predictions.csv", "predictions")
    metrics = {**detection_metrics(val, pred, class_prior(train)), "keyframes": len(val)}
    (out / "eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
    Console().print(_table(f"detector, validation ({result.seconds:.0f}s training)", metrics))


@localize.command("eval-ava")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("ava_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data-root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--subset", type=click.Choice(["train", "val"]), default="val", show_default=True)
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write predictions.csv (AVA layout, score in the 8th column) and eval.json here.")
def eval_ava(checkpoint: Path, ava_dir: Path, data_root: Path, subset: str, out: Path | None) -> None:
    """frame-mAP@0.5 of a detector CHECKPOINT on the keyframes of AVA_DIR's subset (exclusions applied), next to
    the baseline that scores every proposal with the training class prior."""
    from curate.formats import ava
    from trainers.detection import KeyframeData, class_prior, detection_metrics, load_detector, predict_keyframes

    model, meta = load_detector(checkpoint)
    files = _ava_files(ava_dir)
    n = len(meta["classes"])
    data = KeyframeData(files, subset, n, meta["data"], data_root)
    pred = predict_keyframes(model, data)
    metrics = {**detection_metrics(data, pred, class_prior(KeyframeData(files, "train", n, meta["data"], data_root))),
               "keyframes": len(data)}
    if out is not None:
        ava.write_csv(pred, out / "predictions.csv", "predictions")
        (out / "eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
    Console().print(_table(f"detector, {subset}", metrics))
