"""`curate efficiency`: accuracy against the amount of web data per source (curate/experiments/efficiency.py)."""
from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console


@click.command("efficiency")
@click.argument("target_path", metavar="TARGET_MANIFEST",
                type=click.Path(exists=True, path_type=Path))
@click.option("--source", "sources", multiple=True, required=True, metavar="NAME=PATH[:k=v,...]",
              help="A web manifest to grow (as in `curate train --source`: split, weight, share, batch, power, "
                   "pseudo, root, media). Repeatable; one curve each.")
@click.option("--model", default="tsn_r50", show_default=True, help="A bundled model config (recipes/models).")
@click.option("--tiny/--full", default=True, show_default=True, help="The model's CPU-sized `tiny:` version.")
@click.option("--fractions", default="0.25,0.5,1.0", show_default=True,
              help="Fractions of each source's usable rows (nested, per class, seeded); the shared 0-point is the "
                   "target-only run.")
@click.option("--epochs", type=int, default=3, show_default=True, help="Epochs over the target's train split per run.")
@click.option("--batch-size", type=int, default=4, show_default=True, help="Target clips per iteration.")
@click.option("--lr", type=float, default=1e-2, show_default=True)
@click.option("--size", type=int, default=32, show_default=True, help="Crop side in pixels.")
@click.option("--num-clips", type=int, default=None, help="Segments (2D) / clips per sample (default: the model's).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the subsets and every run.")
@click.option("--train-split", default="train", show_default=True)
@click.option("--test-split", default="test", show_default=True, help="The target split every run is scored on.")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder TARGET_MANIFEST's paths are relative to (default: found next to it).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/efficiency"),
              show_default=True, help="Output folder (runs/, efficiency.parquet, efficiency.png).")
@click.option("--device", default=None, help="cpu, cuda, ... (default: cuda when present).")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Runs trained side by side, each in its own process with one torch thread (CPU: up to the cores).")
def efficiency(target_path: Path, sources: tuple[str, ...], model: str, tiny: bool, fractions: str, epochs: int,
               batch_size: int, lr: float, size: int, num_clips: int | None, seed: int, train_split: str,
               test_split: str, data_root: Path | None, out: Path, device: str | None, workers: int) -> None:
    """Data-efficiency curves: train one student on the target alone and with growing fractions of each web source.

    \b
    Each run is scored on the target's test split. Web data is counted in items and in storage with the
    OmniSource cost model (one image ~ 100 KB, one minute of video ~ 12 MB, from duration_s). Writes
    OUT/efficiency.parquet (source, fraction, items, gigabytes, top1, mean_class_acc, seconds),
    OUT/efficiency.png (accuracy vs items and vs GB) and one run folder per point under OUT/runs; a rerun
    skips finished runs and resumes an interrupted one.

    \b
    Example:
      curate efficiency world/manifests/target.parquet --source images=web_images.parquet \\
          --source videos=feed_videos.parquet --fractions 0.25,0.5,1 --epochs 3 --out runs/efficiency
    """
    from curate.core import manifest as mf
    from curate.experiments.efficiency import efficiency_curves, efficiency_table
    from trainers.checkpoint import CheckpointError
    from trainers.config import ConfigError
    from trainers.sources import parse_source

    con = Console()
    t0 = time.perf_counter()
    try:
        parsed = [parse_source(s, default_name=f"web{i + 1}") for i, s in enumerate(sources)]
        names = [s.name for s in parsed]
        if len(set(names)) != len(names):
            raise ConfigError(f"--source names must differ, got {names}")
        table = efficiency_curves(target_path, {s.name: s for s in parsed}, out, model=model, tiny=tiny,
                                  fractions=fractions, epochs=epochs, batch_size=batch_size, lr=lr, size=size,
                                  seed=seed, train_split=train_split, test_split=test_split, data_root=data_root,
                                  data={"num_clips": num_clips} if num_clips else None, device=device, console=con,
                                  workers=workers)
    except (ConfigError, CheckpointError, mf.ManifestError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    con.print(efficiency_table(table))
    con.print(f"{len(table)} runs in {time.perf_counter() - t0:.1f} s; outputs:")
    for what in ("efficiency.parquet", "efficiency.png", "runs"):
        con.print(f"  {out / what}")
