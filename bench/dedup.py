"""Dedup search at scale: seconds for N = 10^5 and 10^6 web vectors x 512 dims (unit, inner product).

Two searches, as curate.clean.dedup runs them:
  vs val/test   every web vector against an index of 2x10^4 val/test vectors (exact IndexFlatIP: what `auto`
                picks at that size), next to plain numpy (matmul + argmax in blocks) in the same run: the ratio;
  within web    the web against itself, k=8: exact (IndexFlatIP) vs IVF (`auto` above 200k vectors), timed on
                10^4 queries (all N would take hours exactly on 2 cores; the per-query rate and the projection
                to all N are printed as such), with IVF's recall@1 against the exact answer;
  cluster       what `dedup --index cluster` (auto above 20k web vectors) runs: every pair of all N at cosine >= 0.9
                (curate.clean.clusters.within_pairs: k-means on a PCA projection, exact blocked products inside each
                cluster and the clusters each vector probes), timed end to end, with the share of planted copies
                found.
Vectors: random with planted near-copies (so recall is measured where it matters). --gpu: the same on the GPUs faiss
sees (written, not run here: this machine has no GPU).

Run: PYTHONPATH=. python bench/dedup.py [--sizes 100000 1000000] [--gpu]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from curate.clean.clusters import within_pairs
from curate.clean.dedup import build_index

DIM, EVAL, QUERIES = 512, 20_000, 10_000


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def numpy_best(index: np.ndarray, queries: np.ndarray, block: int = 8192) -> np.ndarray:
    return np.concatenate([np.argmax(queries[i:i + block] @ index.T, axis=1) for i in range(0, len(queries), block)])


def run(n: int, gpu: bool, rng: np.random.Generator, parts: list[str]) -> None:
    evals = unit(rng.normal(size=(EVAL, DIM)))
    web = unit(rng.normal(size=(n, DIM)))
    web[:1000] = unit(evals[:1000] + 0.01 * rng.normal(size=(1000, DIM)))      # copies of val/test items
    web[1000:2000] = unit(web[2000:3000] + 0.01 * rng.normal(size=(1000, DIM)))  # copies inside the web

    if "eval" in parts:
        vs_eval(evals, web, gpu)
    if "within" in parts:
        within(web, gpu)
    if "cluster" in parts:
        clustered(web, gpu)


def vs_eval(evals: np.ndarray, web: np.ndarray, gpu: bool) -> None:
    n = len(web)
    t0 = time.perf_counter()
    index, desc = build_index(evals, "flat", gpu)
    _, ids = index.search(web, 1)
    faiss_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = numpy_best(evals, web)
    numpy_s = time.perf_counter() - t0
    assert (ids[:1000, 0] == np.arange(1000)).all() and (ids[:, 0] == ref).mean() > 0.999
    print(f"N={n:>9,} vs {EVAL:,} val/test: faiss {desc} {faiss_s:6.1f} s, numpy {numpy_s:6.1f} s, "
          f"ratio {numpy_s / faiss_s:.2f}x", flush=True)


def within(web: np.ndarray, gpu: bool) -> None:
    n = len(web)
    q = web[:QUERIES]
    t0 = time.perf_counter()
    flat, fdesc = build_index(web, "flat", gpu)
    build_flat = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, exact = flat.search(q, 8)
    flat_s = time.perf_counter() - t0
    del flat
    t0 = time.perf_counter()
    ivf, idesc = build_index(web, "ivf", gpu)
    build_ivf = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, approx = ivf.search(q, 8)
    ivf_s = time.perf_counter() - t0
    recall = float((approx[:, 1] == exact[:, 1]).mean())
    planted = float((approx[1000:2000, 1] == np.arange(2000, 3000)).mean())
    print(f"N={n:>9,} within web, {QUERIES:,} queries k=8: {fdesc} build {build_flat:.1f} s search {flat_s:.1f} s "
          f"(all N: ~{flat_s * n / QUERIES / 60:.0f} min projected); {idesc} build {build_ivf:.1f} s search "
          f"{ivf_s:.1f} s (all N: ~{ivf_s * n / QUERIES / 60:.1f} min projected), {flat_s / ivf_s:.1f}x faster, "
          f"recall@1 vs exact {recall:.3f}, planted copies found {planted:.3f}", flush=True)


def planted_found(pairs) -> float:
    """Share of the planted copies (rows 1000..1999 of rows 2000..2999) among the (item_id, dup_of) pairs."""
    found = {(int(a), int(b)) for a, b in zip(pairs["item_id"], pairs["dup_of"])}
    return float(np.mean([(i, i + 1000) in found or (i + 1000, i) in found for i in range(1000, 2000)]))


def clustered(web: np.ndarray, gpu: bool) -> None:
    t0 = time.perf_counter()
    pairs, _, desc = within_pairs(web, np.arange(len(web)), 0.9, gpu=gpu)
    seconds = time.perf_counter() - t0
    planted = planted_found(pairs)
    print(f"N={len(web):>9,} within web, all pairs at cosine >= 0.9: {desc} {seconds:.1f} s "
          f"({seconds / 60:.1f} min), {len(pairs):,} pairs, planted copies found {planted:.3f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--parts", nargs="+", choices=["eval", "within", "cluster"], default=["eval", "within", "cluster"])
    p.add_argument("--gpu", action="store_true")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    for n in args.sizes:
        run(n, args.gpu, rng, args.parts)


if __name__ == "__main__":
    main()
