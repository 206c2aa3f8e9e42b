"""`curate weights import|export`: published MMAction2 / torchvision weights as curate checkpoints and back
(trainers/published.py)."""
from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console


@click.group()
def weights() -> None:
    """Published checkpoints in and out: `import` makes a curate checkpoint of MMAction2 or torchvision weights
    (for filter --teacher, eval, features, train --init); `export` gives MMAction2 its format back."""


def _errors() -> tuple[type[Exception], ...]:
    from trainers.checkpoint import CheckpointError
    from trainers.config import ConfigError
    from trainers.keymap import KeyMapError
    from trainers.published import PublishedError

    return CheckpointError, ConfigError, KeyMapError, PublishedError, FileNotFoundError


@weights.command("import")
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--from", "fmt", type=click.Choice(["mmaction2", "torchvision"]), required=True,
              help="Who published SRC: an MMAction2 1.x/0.x checkpoint or state dict, or a torchvision video "
                   "model's state dict.")
@click.option("--model", "name", required=True,
              help="mmaction2: the bundled model it is (tsn_r50, tsm_r50, i3d_r50, r2plus1d_r34, ircsn_r152, "
                   "ipcsn_r152, slowonly_r50, slowfast_r50, x3d_m, c3d, timesformer_divst|jointst|spaceonly); "
                   "torchvision: its builder (r3d_18, mc3_18, r2plus1d_18, s3d, mvit_v1_b, mvit_v2_s, "
                   "swin3d_t|s|b).")
@click.option("--classes", default=None, metavar="FILE|LIST",
              help="Class names in classifier order: a file (one a line) or a shipped list (kinetics400, "
                   "kinetics600, kinetics700_2020, sthv2). Default: the Kinetics list with as many classes.")
@click.option("--set", "sets", multiple=True, metavar="KEY.PATH=VALUE",
              help="Change the model config or the test-time knobs, e.g. --set data.clip_len=8 "
                   "--set data.frame_interval=8 for SlowOnly's 8x8x1 weights. Repeatable.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The curate checkpoint to write.")
def import_cmd(src: Path, fmt: str, name: str, classes: str | None, sets: tuple[str, ...], out: Path) -> None:
    """Convert SRC (published weights) into a curate checkpoint OUT.

    \b
    The file is read with torch.load(weights_only=True): none of its pickled code runs, and extras such as
    mmengine's message_hub are skipped (listed). Weights that do not fit the model are refused with the
    missing, unexpected and differently shaped tensors. The checkpoint records the source (format, file
    sha256, model), the classes and the source's test-time views and normalisation, which `curate filter`
    uses unless --video-views / --image-views say otherwise.

    \b
    Examples:
      curate weights import slowonly_r50_8xb16-4x16x1-256e_kinetics400-rgb.pth --from mmaction2 \\
          --model slowonly_r50 -o k400_slowonly.pt
      curate weights import r3d_18-b3b3357e.pth --from torchvision --model r3d_18 -o k400_r3d.pt
    """
    from trainers.checkpoint import save_checkpoint
    from trainers.published import import_weights

    con = Console()
    try:
        model, meta = import_weights(src, fmt, name, classes, sets)
        sha = save_checkpoint(out, model, meta)
    except _errors() as exc:
        raise click.ClickException(str(exc)) from exc
    data = next(iter(meta["input"].values()))
    con.print(f"{out}: {name} from {fmt} ({len(meta['classes'])} classes from {meta['source']['classes']}), "
              f"sha256 {sha[:12]}")
    con.print(f"test views: {data['clip_len']}x{data['frame_interval']} frames, {data['views'][0]} clips x "
              f"{data['views'][1]} crops of {data['size']} (short side {data['scale']}), mean {data['mean']} "
              f"std {data['std']}")
    for line in meta["source"]["skipped"]:
        con.print(f"[yellow]skipped: {line}[/]")


@weights.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--to", "fmt", type=click.Choice(["mmaction2"]), required=True, help="The format to write.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The file to write ({'state_dict', 'meta'}, as MMAction2 1.x saves).")
def export_cmd(checkpoint: Path, fmt: str, out: Path) -> None:
    """Write CHECKPOINT (one of ours, of a model MMAction2 also has) under MMAction2's names and shapes."""
    import torch

    from curate.core.files import atomic_path
    from trainers.published import export_mmaction2

    try:
        payload, name = export_mmaction2(checkpoint)
    except _errors() as exc:
        raise click.ClickException(str(exc)) from exc
    with atomic_path(out, durable=True) as tmp:
        torch.save(payload, tmp)
    Console().print(f"{out}: {len(payload['state_dict'])} tensors of {name} in MMAction2's names "
                    f"({payload['meta']['curate']['config']})")
