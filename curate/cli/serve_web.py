"""`curate serve-web ROOT`: serve a demo world's web corpus on 127.0.0.1 until Ctrl-C."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import click

from curate.demo.synth.faults import DEFAULT_KINDS, FAULT_KINDS


@click.command("serve-web")
@click.argument("root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--port", default=8000, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@click.option("--faults", "rate", default=0.0, show_default=True,
              help="Fraction of request targets that fail at first (429, 500, resets, slow, truncated, HTML).")
@click.option("--seed", default=0, show_default=True, help="Seed of the fault pattern (same seed, same faults).")
@click.option("--fault-kinds", default=",".join(DEFAULT_KINDS), show_default=True,
              help=f"Comma-separated fault kinds, of {','.join(FAULT_KINDS)} (404 and 410 never clear).")
@click.option("--max-failures", default=2, show_default=True, help="A faulty target works after at most this many failures.")
@click.option("--permanent", default=0.0, show_default=True, help="Fraction of faulty targets that never recover.")
@click.option("--search-cap", type=int, default=None, help="Most results one search query can reach (like real engines).")
@click.option("--classes", default=10, show_default=True, help="Classes of the world generated when ROOT holds none.")
@click.option("--world-seed", default=0, show_default=True, help="Seed of the world generated when ROOT holds none.")
@click.option("--verbose", is_flag=True, help="Log every request.")
def serve_web(root: Path, port: int, rate: float, seed: int, fault_kinds: str, max_failures: int, permanent: float,
              search_cap: int | None, classes: int, world_seed: int, verbose: bool) -> None:
    """Serve the demo world at ROOT as a small web: search API, hashtag feeds, watch pages, media, CSVs.

    \b
    Endpoints (all on http://127.0.0.1:PORT):
      /search?q=QUERY&type=image|video&page=N   search results (JSON, paginated)
      /tags/TAG?type=image|video&page=N          hashtag feed (JSON; &format=html for the page)
      /watch?v=ID                                watch page with a <video> tag (yt-dlp downloads it)
      /datasets/target.csv, target_SPLIT.csv     Kinetics-style CSV whose ids are watch ids
      /robots.txt, /_stats (?reset=1)            robots rules; request and delivery counters
    Any request may add ?fault=429|500|503|404|410|reset|slow|truncate|html[&fault_times=N].
    When ROOT holds no world, one is generated there first (--classes, --world-seed).
    """
    from curate.demo.synth import make_world
    from curate.demo.synth.faults import Faults
    from curate.demo.synth.web import start

    if not (root / "world.json").exists():
        click.echo(f"no world at {root}: generating one ({classes} classes, seed {world_seed}) ...")
        make_world(root, num_classes=classes, seed=world_seed)
    try:
        faults = Faults(rate=rate, seed=seed, kinds=tuple(k for k in fault_kinds.split(",") if k),
                        max_failures=max_failures, permanent=permanent)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    handle = start(root, port=port, faults=faults, search_cap=search_cap, verbose=verbose)
    site = handle.server.site
    click.echo(f"serving {root} at {handle.url}  ({len(site.items)} items, "
               f"{len(site.search)} search lists, {len(site.tags)} feeds; faults {rate:.0%})  Ctrl-C to stop")
    signal.signal(signal.SIGTERM, _stop)   # a service manager's stop ends it like Ctrl-C: counts printed
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stats = handle.stats()
        handle.close()
        click.echo(f"served {stats['total_requests']} requests, {sum(stats['completed'].values())} full media "
                   f"deliveries, faults {stats['faults'] or 'none'}")


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt
