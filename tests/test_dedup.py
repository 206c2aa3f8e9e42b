"""curate dedup with real faiss: planted near-copies of val/test clips in the demo world's web are all found with
no false hit, copies inside the web collapse to the best-scored row, reruns do no new work, IVF and the clustered
search inside the web agree with the exact index, the teacher embedder, and the command."""
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from curate import media
from curate.clean.clusters import within_pairs
from curate.clean.dedup import PixelEmbedder, TeacherEmbedder, build_index, dedup_manifest, item_vectors, nearest
from curate.clean.teacher import load_teacher
from curate.cli import cli
from curate.core import manifest as mf


@pytest.fixture(scope="module")
def target(tiny_world):
    return mf.read(tiny_world.target_manifest)


class Counting(PixelEmbedder):
    """The pixel embedder, counting the rows it had to decode."""

    calls: list

    def __call__(self, rows, root):
        self.calls.append(len(rows))
        return super().__call__(rows, root)


def _counting():
    e = Counting()
    object.__setattr__(e, "calls", [])
    return e


def test_planted_copies_of_val_and_test_clips_are_all_found(web_rows, target, tiny_world, tmp_path):
    copies = web_rows[web_rows["copy_of"].notna() & (web_rows["status"] == "ok")]
    assert len(copies) == 4 and set(copies["media"]) == {"image", "video"}
    emb = _counting()
    df, rep = dedup_manifest(web_rows, target, tiny_world.root, tiny_world.root, emb, 0.75, cache=tmp_path / "emb.parquet")
    hits = df[[mf.error_code(e) == "duplicate_of_val" for e in df["error"]]]
    others = df[~df["item_id"].isin(copies["item_id"]) & df["dup_sim"].notna()]
    print(f"\ncopies: cosine {sorted(hits['dup_sim'].round(3))}; best distinct item {others['dup_sim'].max():.3f}; "
          f"index {rep.index}")
    assert set(hits["item_id"]) == set(copies["item_id"])            # recall 1.0, precision 1.0
    assert (hits.set_index("item_id")["dup_of"] == copies.set_index("item_id")["copy_of"]).all()
    assert rep.of_val == 4 and rep.within == 0 and "exact" in rep.index and "CPU" in rep.index
    assert df["dup_sim"].notna().sum() == ((web_rows["status"] == "ok") & web_rows["path"].notna()).sum()
    assert len(df) == len(web_rows)

    # Rerun: nothing to check, nothing decoded, same manifest.
    again, rep2 = dedup_manifest(df, target, tiny_world.root, tiny_world.root, emb, 0.75,
                                 cache=tmp_path / "emb.parquet")
    assert rep2.checked == 0 and sum(emb.calls) == rep.against + rep.checked
    pd.testing.assert_frame_equal(again, df)


def test_copies_inside_the_web_collapse_to_the_best_scored_row(web_rows, target, tiny_world, tmp_path):
    img = web_rows[(web_rows["media"] == "image") & (web_rows["status"] == "ok") & web_rows["copy_of"].isna()].iloc[0]
    pixels = media.read_image(tiny_world.root / img["path"])
    shifted = np.clip(pixels[2:-3, 1:-2].astype(int) + 10, 0, 255).astype(np.uint8)
    media.write_image(tmp_path / "copy.jpg", shifted, 70)
    (tmp_path / "orig.jpg").symlink_to(tiny_world.root / img["path"])
    rows = [dict(img.to_dict(), path="orig.jpg", teacher_score=0.4),
            dict(img.to_dict(), item_id="c" * 16, source_id="copy", path="copy.jpg", teacher_score=0.9)]
    df = mf.from_records(rows)
    emb = _counting()
    out, rep = dedup_manifest(df, target, tmp_path, tiny_world.root, emb, 0.75, cache=tmp_path / "e.parquet")
    assert rep.within == 1 and rep.of_val == 0
    loser = out[out["status"] == "rejected"].iloc[0]
    assert loser["item_id"] == img["item_id"] and loser["dup_of"] == "c" * 16
    assert loser["error"].startswith("near_duplicate") and loser["dup_sim"] >= 0.75

    # A new row later: only it is decoded (the target's vectors come from the cache).
    media.write_image(tmp_path / "new.jpg", np.ascontiguousarray(pixels[:, ::-1]), 90)
    more = mf.upsert(out, mf.from_records([dict(img.to_dict(), item_id="d" * 16, path="new.jpg")]))
    _, rep2 = dedup_manifest(more, target, tmp_path, tiny_world.root, emb, 0.75, cache=tmp_path / "e.parquet")
    assert rep2.checked == 1 and emb.calls[-1] == 1


def test_ivf_index_agrees_with_the_exact_index():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(5000, 64)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[:50] + 0.05 * rng.normal(size=(50, 64)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    flat, d1 = build_index(base, "flat")
    ivf, d2 = build_index(base, "ivf")
    assert d1.startswith("exact") and d2.startswith("IVF") and d2.endswith("on CPU")
    s1, i1 = flat.search(queries, 1)
    s2, i2 = ivf.search(queries, 1)
    assert (i1[:, 0] == np.arange(50)).all() and (i2[:, 0] == np.arange(50)).all()
    np.testing.assert_allclose(s1, s2, rtol=1e-5)
    near, _ = nearest({"a": base[:2], "b": base[2:3]}, {"q": base[1:2]}, k=2)
    assert near["q"][0][0] == "a" and near["q"][0][1] == pytest.approx(1.0, abs=1e-5)


def clustered_corpus(n: int = 20_000, dim: int = 128, copies: int = 200, seed: int = 0) -> np.ndarray:
    """Unit vectors around n/100 centres (embeddings have structure) with `copies` planted near-copies (cosine ~0.99):
    rows 100.. copy rows 100 + copies.."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n // 100, dim)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.7 * rng.normal(size=(n, dim)).astype(np.float32)
    x[100:100 + copies] = x[100 + copies:100 + 2 * copies] + 0.02 * rng.normal(size=(copies, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_clustered_search_finds_what_exact_search_finds():
    x = clustered_corpus()
    pairs, run, desc = within_pairs(x, np.arange(len(x)), 0.9)
    assert desc.startswith("k-means 283 clusters on 64-d PCA, 6 probes") and run.shards == 4 and not run.failed
    found = {(min(a, b), max(a, b)) for a, b in zip(pairs["item_id"], pairs["dup_of"])}
    sims, ids = build_index(x, "flat")[0].search(x, 8)
    exact = {(min(a, b), max(a, int(b))) for a in range(len(x)) for b, s in zip(ids[a], sims[a]) if b != a and s >= 0.9}
    assert {(k, k + 200) for k in range(100, 300)} <= exact and found == exact
    assert (pairs["dup_sim"] >= 0.9).all()


def test_dedup_inside_the_web_through_clusters_gives_the_exact_answer(web_rows, target, tiny_world, tmp_path):
    ok = web_rows[(web_rows["status"] == "ok") & web_rows["copy_of"].isna()]
    copies = ok.groupby("media").head(2).assign(teacher_score=0.9)   # the same files under new ids: copies to collapse
    copies["item_id"] = [f"{k:016x}" for k in range(len(copies))]
    web = pd.concat([web_rows, copies], ignore_index=True)
    out = {}
    for kind in ("flat", "cluster"):
        out[kind], rep = dedup_manifest(web, target, tiny_world.root, tiny_world.root, PixelEmbedder(), 0.75,
                                        cache=tmp_path / "emb.parquet", index_kind=kind)
        assert rep.within == len(copies) and rep.of_val == 4, (kind, rep.within_index)
    assert "exact" in rep.index and rep.within_index.startswith("k-means") and set(rep.runs) == {"search"}
    assert set(out["cluster"].loc[out["cluster"]["status"] == "rejected", "dup_of"]) >= set(copies["item_id"])
    pd.testing.assert_frame_equal(out["flat"], out["cluster"])


def test_teacher_embeddings_are_unit_vectors_of_the_teacher_width(tiny_teacher, target, tiny_world):
    teacher = load_teacher(tiny_teacher, "cpu")
    rows = target[target["split"] == "val"].head(6)
    vecs, _ = item_vectors(rows, tiny_world.root, TeacherEmbedder(teacher, batch_size=3), None)
    again, _ = item_vectors(rows, tiny_world.root, TeacherEmbedder(teacher, batch_size=6), None)
    width = teacher.model.cls_head.fc_cls.in_features
    assert set(vecs) == set(rows["item_id"])
    for iid, v in vecs.items():
        assert v.shape == (1, width) and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(v, again[iid], atol=1e-5)


def test_dedup_command(web_rows, tiny_world, tmp_path):
    path = mf.write(web_rows[list(mf.COLUMNS)], tmp_path / "web.parquet", {"data_root": str(tiny_world.root)})
    res = CliRunner().invoke(cli, ["dedup", str(path), "--target", str(tiny_world.target_manifest)])
    assert res.exit_code == 0, res.output
    assert "duplicate_of_val 4" in res.output and "exact (IndexFlatIP) on CPU" in res.output
    df = mf.read(path)
    assert sum(mf.error_code(e) == "duplicate_of_val" for e in df["error"]) == 4
    again = CliRunner().invoke(cli, ["dedup", str(path), "--target", str(tiny_world.target_manifest)])
    assert again.exit_code == 0 and "checked 0 web rows" in again.output
