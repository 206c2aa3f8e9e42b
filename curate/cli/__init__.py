"""The `curate` command: one click command (or group) per stage, each in its own module of this package."""
from __future__ import annotations

import click

from curate import __version__
from curate.cli import crawl as _crawl
from curate.cli import datasets as _datasets
from curate.cli import dedup as _dedup
from curate.cli import demo as _demo
from curate.cli import efficiency as _efficiency
from curate.cli import export as _export
from curate.cli import filter as _filter
from curate.cli import gym as _gym
from curate.cli import info as _info
from curate.cli import localize as _localize
from curate.cli import manifest as _manifest
from curate.cli import merge as _merge
from curate.cli import probe as _probe
from curate.cli import review as _review
from curate.cli import serve_web as _serve_web
from curate.cli import train as _train
from curate.cli import weights as _weights


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="curate")
def cli() -> None:
    """Build, clean and use web-scale datasets for video action understanding.

    \b
    The flow: crawl a recipe into a Parquet manifest, filter it with a teacher,
    remove near-duplicates of the evaluation sets, and train students on the result.
    Every command reads and writes manifests (see `curate info MANIFEST`).
    """


cli.add_command(_info.info)
cli.add_command(_manifest.manifest_group)
cli.add_command(_datasets.import_group)
cli.add_command(_serve_web.serve_web)
cli.add_command(_demo.demo)
cli.add_command(_train.train)
cli.add_command(_train.evaluate)
cli.add_command(_gym.gym)
cli.add_command(_probe.probe)
cli.add_command(_crawl.crawl)
cli.add_command(_crawl.recipes)
cli.add_command(_filter.filter_cmd)
cli.add_command(_review.review)
cli.add_command(_dedup.dedup_cmd)
cli.add_command(_merge.merge_cmd)
cli.add_command(_localize.features)
cli.add_command(_localize.localize)
cli.add_command(_efficiency.efficiency)
cli.add_command(_export.export)
cli.add_command(_weights.weights)


def main() -> None:
    cli(prog_name="curate")
