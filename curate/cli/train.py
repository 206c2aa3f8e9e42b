"""`curate train` and `curate eval`: the bundled trainers on manifests (see trainers/train.py, trainers/evaluate.py)."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def _bundled() -> str:
    from trainers.config import MODEL_DIR

    return ", ".join(sorted(p.stem for p in MODEL_DIR.glob("*.yaml")))


@click.command()
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(exists=True, path_type=Path))
@click.option("--model", "model_name", default=None,
              help="A bundled model config (recipes/models/NAME.yaml); default tsn_r50 when --config is not given.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A model/training YAML of your own (model:, data:, schedule:; `_base_:` allowed).")
@click.option("--tiny", is_flag=True, help="Merge the config's `tiny:` section: a CPU-sized version of the model.")
@click.option("--source", "sources", multiple=True, metavar="NAME=PATH[:k=v,...]",
              help="An auxiliary manifest trained on in the same iterations (OmniSource). Keys: split, weight "
                   "(loss weight), share (batch size as a fraction of the target's), batch, power (class-balanced "
                   "sampling exponent), pseudo (images as frame/static/moving), root, media, holdout (FOLD/FOLDS[@SEED]: "
                   "that fold's rows left out, so `curate filter` scores them with this model as unseen). "
                   "Repeatable.")
@click.option("--split", default="train", show_default=True, help="Split of MANIFEST to train on.")
@click.option("--val-split", default="val", show_default=True,
              help="Split of MANIFEST to validate on every eval_every epochs ('none' to skip).")
@click.option("--level", type=click.Choice(["label", "element", "set", "event"]), default=None,
              help="Which hierarchy column is the class (FineGym-style manifests). Default: label.")
@click.option("--subset", default=None, metavar="gym99|gym288",
              help="A FineGym benchmark on an elements manifest (`curate gym import`): its official label ids "
                   "(99 or 288 classes, present or not), its train/val split files; best.pt by mean class "
                   "accuracy, the paper's metric.")
@click.option("--data-root", "data_roots", multiple=True, metavar="PATH|NAME=PATH",
              help="Folder the manifest's paths are relative to (default: its data_root metadata, else found next to "
                   "the manifest), or NAME=PATH to re-point one named root of a merged manifest whose folder moved "
                   "(`curate info` lists them). Repeatable.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: runs/<model name>).")
@click.option("--epochs", type=int, default=None, help="Epochs over the target split.")
@click.option("--batch-size", type=int, default=None, help="Target clips per iteration.")
@click.option("--lr", type=float, default=None, help="Base learning rate.")
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default=None)
@click.option("--clip-len", type=int, default=None, help="Frames per clip (SampleFrames clip_len).")
@click.option("--frame-interval", type=int, default=None, help="Step between sampled frames.")
@click.option("--num-clips", type=int, default=None, help="Clips (2D: segments) per sample.")
@click.option("--size", type=int, default=None, help="Crop side in pixels (the pre-crop scale follows).")
@click.option("--pretrained", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A local torchvision ImageNet state dict for the 2D backbone, or inflated into a 3D ResNet "
                   "(i3d_r50, slowonly_r50, slowfast_r50's slow pathway: k x k kernels repeated over time, "
                   "divided by T). Nothing is downloaded.")
@click.option("--init", "init", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Start from one of our checkpoints trained on another label set (transfer): the backbone is "
                   "loaded, the head re-initialised for MANIFEST's classes (rows of classes with the same name "
                   "kept); what was not loaded is listed.")
@click.option("--freeze-backbone", is_flag=True, default=None, help="With --init: train the head only.")
@click.option("--backbone-lr-mult", type=float, default=None,
              help="Backbone learning rate as a fraction of --lr (e.g. 0.1 when fine-tuning with --init).")
@click.option("--set", "sets", multiple=True, metavar="KEY.PATH=VALUE",
              help="Any config value, e.g. --set schedule.warmup_epochs=2 --set data.flip=0. Repeatable.")
@click.option("--workers", type=int, default=None, help="DataLoader worker processes (default 0).")
@click.option("--seed", type=int, default=None)
@click.option("--save-every", type=int, default=None, help="Iterations between mid-epoch resume checkpoints.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when present).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt (exactly where it stopped).")
@click.option("--nproc-per-node", type=click.IntRange(min=1), default=None,
              help="Data-parallel processes on this machine (one per GPU): relaunches through torchrun. "
                   "--batch-size stays the global batch.")
@click.option("--nnodes", default="1", show_default=True, help="Machines in the run (torchrun's --nnodes).")
@click.option("--node-rank", type=int, default=0, show_default=True, help="This machine's index among --nnodes.")
@click.option("--master-addr", default=None, help="Address of node 0 (multi-node runs).")
@click.option("--master-port", type=int, default=None, help="Port on node 0 (multi-node runs; default 29500).")
@click.pass_context
def train(ctx: click.Context, manifest_path: Path, model_name: str | None, config_file: Path | None, tiny: bool,
          sources: tuple[str, ...],
          split: str, val_split: str, level: str | None, subset: str | None, data_roots: tuple[str, ...], out: Path | None,
          epochs: int | None, batch_size: int | None, lr: float | None, optimizer: str | None, clip_len: int | None,
          frame_interval: int | None, num_clips: int | None, size: int | None, pretrained: str | None,
          init: Path | None, freeze_backbone: bool | None, backbone_lr_mult: float | None,
          sets: tuple[str, ...], workers: int | None, seed: int | None, save_every: int | None, device: str | None,
          resume: bool, nproc_per_node: int | None, nnodes: str, node_rank: int, master_addr: str | None,
          master_port: int | None) -> None:
    """Train a recognizer on MANIFEST (the target) and optional auxiliary sources.

    \b
    Every iteration takes --batch-size target clips plus each --source's share; the loss is the sum over
    sources of weight x mean cross-entropy, in one optimizer step; an epoch is one pass over the target split.
    Writes OUT/last.pt (resumable), OUT/best.pt (best on the validation split), OUT/metrics.jsonl,
    OUT/curve.png and OUT/config.yaml. Both checkpoints load with trainers.checkpoint.load_checkpoint.

    \b
    A merged manifest (`curate merge`) trains as OmniSource does with no other option: its train split is the
    target, its web rows become one auxiliary source per manifest source and media, each mixed in with the
    --source defaults (share 1, weight 1); --source replaces them.

    \b
    Examples:
      curate train manifests/omni.parquet                      # tsn_r50; target + web sources, mixed
      curate train world/manifests/target.parquet --model tsn_r50 --tiny --size 64 --epochs 20
      curate train target.parquet --model slowonly_r50 --source web=web.parquet:share=0.5,power=0.5
      curate train target.parquet --model tsm_r50 --nproc-per-node 8        # DDP on 8 GPUs (torchrun)
      curate train ucf101_split1.parquet --model tsn_r50 --init runs/tsn_r50/best.pt --backbone-lr-mult 0.1
    """
    from curate.core import manifest as mf
    from curate.formats.finegym import GymError
    from trainers import distributed
    from trainers.checkpoint import CheckpointError
    from trainers.config import ConfigError, fusion_streams
    from trainers.inputs import data_overrides

    if (nproc_per_node or str(nnodes) != "1") and not distributed.under_torchrun():
        launch = ("nproc_per_node", "nnodes", "node_rank", "master_addr", "master_port")
        cmd = distributed.torchrun_command(["train", *_forward_args(ctx, skip=launch)], nproc_per_node or 1,
                                           nnodes, node_rank, master_addr, master_port)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[2]),
                                                                        os.environ.get("PYTHONPATH")]))}
        ctx.exit(subprocess.call(cmd, env=env))
    from trainers.schedule import Schedule
    from trainers.sources import Source, auxiliary_sources, parse_source
    from trainers.train import make_config
    from trainers.train import train as run

    if model_name and config_file:
        raise click.UsageError(f"give one of --model NAME or --config FILE (bundled models: {_bundled()})")
    model_name = model_name or (None if config_file else DEFAULT_MODEL)
    data_root = _roots(data_roots)
    con = Console()
    try:
        base = make_config(model_name or config_file, tiny=tiny)
        schedule = {k: v for k, v in dict(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                                          workers=workers, seed=seed, save_every=save_every, level=level,
                                          freeze_backbone=freeze_backbone, backbone_lr_mult=backbone_lr_mult
                                          ).items()
                    if v is not None}
        model_over = {}
        if pretrained:  # every 2D backbone of the model (both streams of a two-stream model)
            streams = fusion_streams(base["model"])
            model_over = ({k: {"backbone": {"pretrained": pretrained}} for k in streams} if streams
                          else {"backbone": {"pretrained": pretrained}})
        data = data_overrides(base["model"], clip_len=clip_len, frame_interval=frame_interval, num_clips=num_clips,
                              size=size)
        cfg = make_config(model_name or config_file, tiny=tiny, sets=sets,
                          overrides={"model": model_over, "data": data, "schedule": schedule})
        rows, classes = manifest_path, None
        if subset:
            rows, classes, data_root = _gym_subset(manifest_path, subset, data_root)
            cfg["schedule"] = {**cfg["schedule"], "level": "label", "best_metric": "mean_class_acc"}
        target = Source("target", rows, split=split, root=data_root)
        aux = [parse_source(s, default_name=f"aux{i + 1}") for i, s in enumerate(sources)]
        if not sources and not subset:   # a merged (OmniSource) manifest: its web rows, one source per kind
            aux = auxiliary_sources(mf.read(manifest_path), manifest_path, data_root)
        val = None if val_split.lower() == "none" else Source("val", rows, split=val_split, root=data_root)
        if val is not None and not ((mf.read(rows) if subset is None else rows)["split"] == val_split).any():
            con.print(f"[yellow]no rows in split {val_split!r}: training without validation[/]")
            val = None
        out = out or Path("runs") / (model_name or config_file.stem)
        result = run(cfg, [target, *aux], out, val=val, resume=resume, init=init, device=device, console=con,
                     classes=classes)
    except (ConfigError, CheckpointError, mf.ManifestError, FileNotFoundError, GymError) as exc:
        raise click.ClickException(str(exc)) from exc
    if distributed.from_env().main:
        _train_summary(con, result, [target, *aux], Schedule.from_config(cfg.get("schedule")).batch_size)


DEFAULT_MODEL = "tsn_r50"


def _roots(values: tuple[str, ...]) -> str | dict[str, str] | None:
    """--data-root values: one folder, or NAME=PATH re-pointing named roots (several allowed)."""
    if not values:
        return None
    named = dict(v.split("=", 1) for v in values if "=" in v)
    plain = [v for v in values if "=" not in v]
    if plain and (named or len(plain) > 1):
        raise click.UsageError("--data-root takes one PATH, or NAME=PATH once per root to re-point")
    return plain[0] if plain else named


def _gym_subset(path: Path, subset: str, data_root: str | dict[str, str] | None):
    """(rows, class names, data root) of a FineGym benchmark subset of an elements manifest."""
    from curate.core import manifest as mf
    from curate.formats import finegym as fg

    meta = mf.read_metadata(path)
    if "gym_categories" not in meta:
        raise click.ClickException(f"{path} is not a FineGym elements manifest (`curate gym import` writes one): "
                                   "--subset needs its categories")
    rows, names = fg.subset_rows(mf.read(path), fg.categories_from_json(meta["gym_categories"]), subset)
    return rows, names, data_root or str(mf.find_data_root(path, rows))


def _forward_args(ctx: click.Context, skip: tuple[str, ...]) -> list[str]:
    """The command line that gives this command's parsed parameters again (minus `skip`): what torchrun runs."""
    args: list[str] = []
    for p in ctx.command.params:
        value = ctx.params.get(p.name)
        if p.name in skip or value is None or value == () or (isinstance(p, click.Option) and p.is_flag and not value):
            continue
        if isinstance(p, click.Argument):
            args.append(str(value))
        elif p.is_flag:
            args.append(p.opts[0])
        else:
            for v in (value if p.multiple else [value]):
                args += [p.opts[0], str(v)]
    return args


def _train_summary(con: Console, r, sources: list, batch: int) -> None:
    """What was mixed and how (per source: rows, clips per iteration, loss weight, class re-balancing), then the
    best validation metrics and the files written."""
    con.print("[bold]sources mixed in every iteration[/] (config.yaml has them too):")
    for i, src in enumerate(sources):
        rows = ", ".join(x for x in (f"split {src.split or 'all'}", src.media and f"{src.media}s",
                                     src.origin and f"source {src.origin}") if x)
        skipped = ", ".join(f"{k} {v}" for k, v in r.skipped.get(src.name, {}).items())
        con.print(f"  {src.name}: {rows}; {r.rows.get(src.name, 0)} rows used, "
                  f"{batch if i == 0 else src.batch_size(batch)} clips per iteration, loss weight {src.weight:g}"
                  + ("" if src.power is None else f", class power {src.power:g}")
                  + (f"; skipped {skipped}" if skipped else ""), highlight=False, soft_wrap=True)
    if r.metrics:
        con.print("best validation: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                   for k, v in r.metrics.items()))
    con.print(f"{r.epochs} epochs, {r.labels.num_classes} classes ({r.labels.level}) in {r.seconds:.1f} s")
    for what in ("last.pt", "best.pt", "metrics.jsonl", "curve.png", "config.yaml"):
        if (r.out / what).exists():
            con.print(f"  {r.out / what}")


@click.command("eval")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(exists=True, path_type=Path))
@click.option("--split", default="test", show_default=True, help="Split to score ('all' for every usable row).")
@click.option("--views", default=None, metavar="CLIPSxCROPS",
              help="Test views, e.g. 10x3 (10 clips x ThreeCrop) or 25x10 for 2D TenCrop; default: the "
                   "checkpoint's (1x1 unless its config says otherwise).")
@click.option("--data-root", "data_roots", multiple=True, metavar="PATH|NAME=PATH",
              help="Folder the manifest's paths are relative to, or NAME=PATH re-pointing a merged manifest's root.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where metrics.json, predictions.parquet and confusion.png go (default: next to CHECKPOINT).")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--workers", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, ... (default: cuda when present).")
def evaluate(checkpoint: Path, manifest_path: Path, split: str, views: str | None, data_roots: tuple[str, ...],
             out: Path | None, batch_size: int, workers: int, device: str | None) -> None:
    """Score MANIFEST's split with CHECKPOINT: top-1, top-5, mean class accuracy (and set/event accuracy when
    the classes form a hierarchy), a confusion matrix PNG and per-clip predictions."""
    from curate.core import manifest as mf
    from trainers.checkpoint import CheckpointError
    from trainers.config import ConfigError
    from trainers.evaluate import evaluate_checkpoint

    con = Console()
    out = out or checkpoint.parent / f"eval_{checkpoint.stem}_{split}"
    t0 = time.perf_counter()
    try:
        with Progress(TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=con, transient=True) as bar:
            task = bar.add_task("eval", total=None)
            result = evaluate_checkpoint(checkpoint, manifest_path, None if split == "all" else split, views,
                                         _roots(data_roots), out, batch_size, workers, device,
                                         progress=lambda done, total: bar.update(task, completed=done, total=total))
    except (ConfigError, CheckpointError, mf.ManifestError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    m = result.metrics
    if not m.get("n"):
        raise click.ClickException(f"no usable rows in split {split!r} of {manifest_path} "
                                   f"(skipped: {json.dumps(result.skipped)})")
    t = Table(title=f"{checkpoint.name} on {manifest_path.name} [{split}], views {m['views']}", title_justify="left",
              show_edge=False)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k in ("top1", "top5", "mean_class_acc", "set_acc", "event_acc"):
        if k in m:
            t.add_row(k, f"{m[k]:.4f}")
    t.add_row("clips", str(m["n"]))
    con.print(t)
    if result.skipped:
        con.print("skipped rows: " + ", ".join(f"{k} {v}" for k, v in result.skipped.items()))
    con.print(f"done in {time.perf_counter() - t0:.1f} s; outputs:")
    for path in result.outputs.values():
        con.print(f"  {path}")
