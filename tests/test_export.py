"""`curate export`: every format read back by its consumer (webdataset, datasets, MMAction2 1.2 where its test-only
environment is present, else its list parser, PyTorchVideo's dataset) on a manifest of the tiny world's target clips
and web images / videos, with rejected, failed, missing and unlabelled rows; shards resume; FineGym elements."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core import manifest as mf
from curate.formats import lists

MMA = Path(os.environ.get("CURATE_MMA_PKGS", "/work/staging/mma/pkgs"))   # MMAction2 1.2.0, test-only, not in CI
CLASSES = ["square slides left", "square slides right", "triangle grows", "triangle shrinks"]


@pytest.fixture(scope="module")
def mixed(tiny_world, web_rows, tmp_path_factory) -> Path:
    """Target clips (train/val/test) + web images and videos (split web) as filter and dedup leave them: teacher
    scores, 5 rows rejected as teacher_low, one as a duplicate of a val clip, a derived row (parent_id), an ok row
    whose file is gone, one without a label; the world's broken files are failed rows."""
    target = mf.read(tiny_world.target_manifest)
    web = web_rows[list(mf.COLUMNS)].copy()
    web["teacher_score"] = np.linspace(0.05, 0.95, len(web)).astype("float32")
    ok = web.index[web["status"] == "ok"]
    web.loc[ok[:5], ["status", "error"]] = ["rejected", "teacher_low: 0.05 < 0.5"]
    val_id = target.loc[target["split"] == "val", "item_id"].iloc[0]
    web.loc[ok[5], ["status", "error", "dup_of"]] = ["rejected", f"duplicate_of_val: {val_id}", val_id]
    web.loc[ok[5], "dup_sim"] = np.float32(0.97)
    web.loc[ok[6], "parent_id"] = web.loc[ok[7], "item_id"]
    web.loc[ok[8], "path"] = "web/i/gone.jpg"
    web.loc[ok[9], ["label", "label_id"]] = [None, pd.NA]
    path = tmp_path_factory.mktemp("export") / "mixed.parquet"
    mf.write(pd.concat([target, web], ignore_index=True), path, {"data_root": str(tiny_world.root)})
    return path


def expected(path: Path, root: Path) -> pd.DataFrame:
    """What every export must hold: status ok, a label, the file on disk."""
    df = mf.read(path)
    keep = (df["status"] == "ok") & df["label_id"].notna() & df["path"].map(lambda p: (root / str(p)).is_file())
    return df[keep].set_index("item_id")


def run(*args) -> str:
    res = CliRunner().invoke(cli, ["export", *map(str, args)], terminal_width=200)
    assert res.exit_code == 0, res.output
    return res.output


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_selection_counts_every_row_left_out(mixed, tiny_world):
    from curate import export as ex

    sel = ex.select(mixed)
    exp = expected(mixed, tiny_world.root)
    assert sel.root == tiny_world.root.resolve() and sel.names == CLASSES
    assert sorted(sel.rows["item_id"]) == sorted(exp.index)
    assert (sel.rows.groupby("split")["item_id"].apply(list).map(lambda ids: ids == sorted(ids))).all()
    assert sum(sel.skipped.values()) == len(mf.read(mixed)) - len(exp)
    reasons = {}
    for (split, _, reason), n in sel.skipped.items():
        assert split == "web"
        reasons[reason] = reasons.get(reason, 0) + n
    assert reasons["rejected: teacher_low"] == 5 and reasons["rejected: duplicate_of_val"] == 1
    assert reasons["file missing"] == 1 and reasons["no label"] == 1
    assert {"failed: truncated", "failed: empty", "failed: undecodable"} <= set(reasons)
    only = ex.select(mixed, splits=("train", "val"))
    assert set(only.rows["split"]) == {"train", "val"} and not only.skipped
    with pytest.raises(ex.ExportError, match="no rows in split"):
        ex.select(mixed, splits=("nope",))
    with pytest.raises(ex.ExportError, match="not the class list's name"):
        ex.select(mixed, classes=list(reversed(CLASSES)))
    assert ex.select(mixed, classes=CLASSES + ["unseen"]).names == CLASSES + ["unseen"]
    with pytest.raises(ex.ExportError, match="no FineGym subset"):
        ex.select(mixed, subset="gym99")


def test_shard_plan_respects_items_and_bytes():
    from curate.export import shards

    assert shards.plan([10] * 7, max_items=3) == [(0, 3), (3, 6), (6, 7)]
    assert shards.plan([4, 4, 4, 9, 1], max_bytes=8) == [(0, 2), (2, 3), (3, 4), (4, 5)]
    assert shards.plan([4, 4, 4], max_items=2, max_bytes=100) == [(0, 2), (2, 3)]
    assert shards.plan([], max_items=2) == []


def read_wds(urls: list[Path]) -> dict[str, dict]:
    """key -> ext, cls, json and the media: an image decoded by webdataset's Pillow handler, a video's sha256."""
    import webdataset as wds

    out = {}
    for sample in wds.WebDataset([str(u) for u in urls], shardshuffle=False).decode("pil"):
        media = [k for k in sample if k in ("mp4", "webm", "jpg", "jpeg", "png")]
        assert len(media) == 1, sorted(sample)
        raw = sample[media[0]]
        out[sample["__key__"]] = {"ext": media[0], "cls": sample["cls"], "json": sample["json"],
                                  "pixels": None if isinstance(raw, bytes) else np.asarray(raw.convert("RGB")),
                                  "sha": sha(raw) if isinstance(raw, bytes) else None}
    return out


def test_webdataset_shards_read_back_and_resume(mixed, tiny_world, tmp_path):
    out = tmp_path / "wds"
    text = run(mixed, "--to", "webdataset", "-o", out, "--max-items", 7, "--max-bytes", "200kB")
    assert "skipped" in text and "rejected: teacher_low" in text and "web-{000000.." in text
    exp = expected(mixed, tiny_world.root)
    for split, grp in exp.groupby("split"):
        shards = sorted(out.glob(f"{split}-*.tar"))
        assert [p.name for p in shards] == [f"{split}-{i:06d}.tar" for i in range(len(shards))]
        got = read_wds(shards)
        assert sorted(got) == sorted(grp.index)
        counts = [len(read_wds([s])) for s in shards]
        assert max(counts) <= 7 and sum(counts) == len(grp)
        assert all(s.stat().st_size <= 200_000 or n == 1 for s, n in zip(shards, counts))
        for iid, row in grp.iterrows():
            item = got[iid]
            assert item["cls"] == row["label_id"] and item["json"]["label"] == row["label"]
            assert item["json"]["label_id"] == row["label_id"] and item["json"]["split"] == split
            assert item["json"]["source"] == row["source"] and item["json"]["item_id"] == iid
            assert item["ext"] == Path(row["path"]).suffix[1:]
            if row["media"] == "image":      # decoded by webdataset: the pixels Pillow reads from the file
                from PIL import Image

                pixels = np.asarray(Image.open(tiny_world.root / row["path"]).convert("RGB"))
                assert np.array_equal(item["pixels"], pixels)
            else:
                assert item["sha"] == sha((tiny_world.root / row["path"]).read_bytes())
            for col in ("url", "query", "parent_id", "dup_of"):
                assert item["json"].get(col) == (None if pd.isna(row[col]) else row[col])
            if pd.notna(row["teacher_score"]):
                assert item["json"]["teacher_score"] == pytest.approx(float(row["teacher_score"]))
    assert any(j["json"].get("parent_id") for j in read_wds(sorted(out.glob("web-*.tar"))).values())
    assert (out / "label_map.txt").read_text().splitlines() == CLASSES
    # idempotent: a rerun keeps every shard; a lost shard and a changed row are written again, nothing else
    web = sorted(out.glob("web-*.tar"))
    stamp = {p: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    assert f"({len(stamp)} shards kept" in run(mixed, "--to", "webdataset", "-o", out, "--max-items", 7,
                                               "--max-bytes", "200kB")
    web[0].unlink()
    df = mf.read(mixed)
    first = read_wds([web[-1]])
    changed = df["item_id"] == next(iter(first))
    df.loc[changed, "query"] = "a new query"
    moved = mixed.with_name("changed.parquet")
    mf.write(df, moved, mf.read_metadata(mixed))
    text = run(moved, "--to", "webdataset", "-o", out, "--max-items", 7, "--max-bytes", "200kB")
    assert f"({len(stamp) - 2} shards kept" in text
    rewritten = {p for p, t in stamp.items() if not p.exists() or p.stat().st_mtime_ns != t}
    assert rewritten == {web[0], web[-1]}
    assert read_wds([web[-1]])[next(iter(first))]["json"]["query"] == "a new query"
    # fewer, bigger shards for one split: the train shards no longer planned are removed, the others kept
    run(mixed, "--to", "webdataset", "-o", out, "--split", "train", "--max-items", 100)
    assert [p.name for p in sorted(out.glob("train-*.tar"))] == ["train-000000.tar"] and len(web) > 1
    assert all(p.exists() for p in web)


def test_hf_parquet_loads_with_class_names(mixed, tiny_world, tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "hf"
    text = run(mixed, "--to", "hf", "-o", out, "--max-items", 10)
    assert "load_dataset(" in text
    exp = expected(mixed, tiny_world.root)
    card = (out / "README.md").read_text()
    assert all(name in card for name in CLASSES) and card.startswith("---\n")
    cache = str(tmp_path / "hf_cache")     # not ~/.cache: datasets keys a folder's cache by its name
    by_dir = datasets.load_dataset(str(out), cache_dir=cache)
    files = {s: str(out / "data" / f"{s}-*.parquet") for s in sorted(set(exp["split"]))}
    by_files = datasets.load_dataset("parquet", data_files=files, cache_dir=cache)
    for ds in (by_dir, by_files):
        assert sorted(ds) == sorted(files)
        for split, d in ds.items():
            assert d.features["label"].names == CLASSES
            grp = exp[exp["split"] == split]
            assert sorted(d["item_id"]) == sorted(grp.index)
            assert dict(zip(d["item_id"], d["label"])) == grp["label_id"].astype(int).to_dict()
            assert dict(zip(d["item_id"], d["path"])) == grp["path"].to_dict()
    assert len(list((out / "data").glob("web-*.parquet"))) == -(-int((exp["split"] == "web").sum()) // 10)
    from PIL import Image
    from torchcodec.decoders import VideoDecoder

    web = by_dir["web"]
    raw = web.cast_column("image", datasets.Image(decode=False)).cast_column("video", datasets.Video(decode=False))
    for row in raw:
        want = exp.loc[row["item_id"]]
        media = row["image"] if want["media"] == "image" else row["video"]
        assert (row["image"] is None) != (row["video"] is None)
        assert sha(media["bytes"]) == sha((tiny_world.root / want["path"]).read_bytes())
        for col in ("url", "query", "parent_id", "dup_of"):
            assert row[col] == (None if pd.isna(want[col]) else want[col])
        assert row["teacher_score"] == pytest.approx(float(want["teacher_score"]))
    img = next(r for r in web if r["image"] is not None)
    assert img["image"].size == Image.open(tiny_world.root / exp.loc[img["item_id"], "path"]).size
    vid = next(r for r in web if r["video"] is not None)     # torchcodec's decoder over the embedded bytes
    assert len(vid["video"]) == len(VideoDecoder(str(tiny_world.root / exp.loc[vid["item_id"], "path"]))) > 1
    # --no-embed: absolute paths that decode on this machine
    run(mixed, "--to", "hf", "-o", tmp_path / "paths", "--no-embed", "--split", "train")
    train = datasets.load_dataset(str(tmp_path / "paths"), cache_dir=cache)["train"]
    assert len(train[0]["video"]) == exp.loc[train[0]["item_id"], "frames"] == 16


MMA_READ = """
import json, sys
from mmengine.config import Config
from mmaction.registry import DATASETS
from mmaction.utils import register_all_modules
register_all_modules()
cfg, out = Config.fromfile(sys.argv[1]), {}
for split, dicts in cfg.datasets.items():
    for d in dicts:
        video = d['type'] == 'VideoDataset'
        pipe = ([dict(type='PyAVInit'), dict(type='SampleFrames', clip_len=4, num_clips=1), dict(type='PyAVDecode')]
                if video else [dict(type='SampleFrames', clip_len=4, num_clips=1),
                               dict(type='RawFrameDecode', decoding_backend='pillow')])
        ds = DATASETS.build(dict(**d, pipeline=pipe))
        infos = [ds.get_data_info(i) for i in range(len(ds))]
        out.setdefault(split, []).extend(
            dict(path=i['filename'] if video else i['frame_dir'], label=i['label'], frames=i.get('total_frames'),
                 tmpl=i.get('filename_tmpl')) for i in infos)
        first = ds[0]
        out.setdefault('decoded', []).append([len(first['imgs']), list(first['imgs'][0].shape), first['label']])
print('RESULT' + json.dumps(out))
"""


def mmaction_items(out: Path) -> dict[str, list[dict]]:
    """The lists under out parsed as MMAction2 1.x's VideoDataset / RawframeDataset parse them (curate's copy of
    their load_data_list), with the prefixes of the config fragment."""
    cfg: dict = {}
    exec((out / "mmaction2_data.py").read_text(), {}, cfg)
    items: dict[str, list[dict]] = {}
    for split, dicts in cfg["datasets"].items():
        for d in dicts:
            if d["type"] == "VideoDataset":
                items.setdefault(split, []).extend(
                    dict(path=i["filename"], label=i["label"], frames=None, tmpl=None)
                    for i in lists.read_video_list(d["ann_file"], d["data_prefix"]["video"]))
            else:
                items.setdefault(split, []).extend(
                    dict(path=i["frame_dir"], label=i["label"], frames=i["total_frames"], tmpl=d["filename_tmpl"])
                    for i in lists.read_rawframe_list(d["ann_file"], d["data_prefix"]["img"]))
    return items


def check_mmaction(items: dict[str, list[dict]], exp: pd.DataFrame, root: Path) -> None:
    for split, grp in exp.groupby("split"):
        got = items[split]
        assert len(got) == len(grp)
        vids = grp[grp["media"] == "video"]
        videos = {str(root / p): lab for p, lab in zip(vids["path"], vids["label_id"])}
        assert {i["path"]: i["label"] for i in got if i["frames"] is None} == videos
        images = grp[grp["media"] == "image"]
        frames = {i["path"]: i for i in got if i["frames"] is not None}
        assert len(frames) == len(images)
        for iid, row in images.iterrows():
            item = frames[next(p for p in frames if p.endswith(iid))]
            frame = Path(item["path"]) / item["tmpl"].format(1)
            assert item["label"] == row["label_id"] and item["frames"] == 1
            assert frame.read_bytes() == (root / row["path"]).read_bytes() and frame.suffix == Path(row["path"]).suffix


def test_mmaction2_lists_parse_as_mmaction2_does(mixed, tiny_world, tmp_path):
    out = tmp_path / "mma"
    text = run(mixed, "--to", "mmaction2", "-o", out)
    assert f"data_prefix=dict(video='{tiny_world.root.resolve()}')" in text
    exp = expected(mixed, tiny_world.root)
    root = tiny_world.root.resolve()
    check_mmaction(mmaction_items(out), exp, root)
    assert (out / "label_map.txt").read_text().splitlines() == CLASSES
    line = (out / "train_list_videos.txt").read_text().splitlines()[0]
    assert line.split(" ")[0].startswith("synthetic/") and len(line.split(" ")) == 2
    run(mixed, "--to", "mmaction2", "-o", tmp_path / "abs", "--absolute")
    check_mmaction(mmaction_items(tmp_path / "abs"), exp, root)
    assert (tmp_path / "abs" / "train_list_videos.txt").read_text().startswith(str(root))
    with pytest.raises(ValueError, match="whitespace"):
        lists.list_text(["a b.mp4"], [0])


@pytest.mark.skipif(not (MMA / "mmaction").is_dir(), reason=f"no MMAction2 test environment at {MMA}")
def test_mmaction2_builds_and_decodes_the_export(mixed, tiny_world, tmp_path):
    out = tmp_path / "mma"
    run(mixed, "--to", "mmaction2", "-o", out)
    res = subprocess.run([sys.executable, "-c", MMA_READ, str(out / "mmaction2_data.py")], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(MMA)})
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.split("RESULT", 1)[1])
    decoded = got.pop("decoded")
    assert got == mmaction_items(out)           # MMAction2 reads what curate's parser reads ...
    check_mmaction(got, expected(mixed, tiny_world.root), tiny_world.root.resolve())    # ... which is the manifest
    assert all(n == 4 and len(shape) == 3 and shape[2] == 3 for n, shape, _ in decoded)   # clips of 4 RGB frames


def test_pytorchvideo_csv_reads_back(mixed, tiny_world, tmp_path):
    out = tmp_path / "ptv"
    text = run(mixed, "--to", "pytorchvideo", "-o", out)
    assert "image (PyTorchVideo reads videos)" in text
    exp = expected(mixed, tiny_world.root)
    videos = exp[exp["media"] == "video"]
    root = tiny_world.root.resolve()
    for split, grp in videos.groupby("split"):
        pairs = lists.read_pytorchvideo_csv(out / f"{split}.csv")
        assert dict(pairs) == dict(zip(grp["path"], grp["label_id"].astype(int)))
    data = pytest.importorskip("pytorchvideo.data")
    import torch

    ds = data.labeled_video_dataset(str(out / "web.csv"), data.make_clip_sampler("random", 1.0),
                                    video_sampler=torch.utils.data.SequentialSampler, video_path_prefix=str(root),
                                    decode_audio=False)
    web = videos[videos["split"] == "web"]
    by_name = {Path(p).name: lab for p, lab in zip(web["path"], web["label_id"])}
    seen = {}
    for clip in ds:
        seen[clip["video_name"]] = clip["label"]
        assert clip["video"].shape[0] == 3 and clip["video"].shape[1] >= 1
    assert seen == by_name


def test_finegym_elements_export_matches_gym_lists(tiny_world, tmp_path):
    from curate.formats import finegym as fg
    from curate.gym import build as gymbuild
    from curate.gym import trim as gymtrim

    tree = json.loads(tiny_world.hierarchy.read_text())
    events, elements, cats, _ = gymbuild.build(tree, pd.read_parquet(tiny_world.truth_events),
                                               pd.read_parquet(tiny_world.truth_actions), source="synthetic",
                                               min_count=2)
    root = tmp_path / "data"
    el = gymtrim.trim_elements(elements, events, root, gymtrim.source_finder(tiny_world.root / "web" / "v"))
    el.loc[el.index[0], ["status", "error", "path"]] = ["failed", "trim_failed: test", None]
    folder = tmp_path / "gym"
    mf.write(el, folder / "elements.parquet", {"gym_categories": fg.categories_to_json(cats),
                                               "data_root": str(root.resolve())})
    gym_lists = gymbuild.mmaction_lists(el, tmp_path / "gym_lists", only_on_disk=True)
    for subset in [cats.full, *cats.subsets]:
        out = tmp_path / f"mma_{subset}"
        run(folder / "elements.parquet", "--to", "mmaction2", "-o", out, "--subset", subset)
        names = (out / "label_map.txt").read_text().splitlines()
        table = cats.subsets.get(subset) or {g: g for g in cats.elements}
        assert names == [cats.elements[table[c]][0] for c in range(len(names))]
        for gl in (p for p in gym_lists if p.name.startswith(f"{subset}_")):
            split = gl.stem[len(subset) + 1:]
            ours = lists.read_video_list(out / f"{split}_list_videos.txt", prefix=None)
            theirs = lists.read_video_list(gl, prefix=None)
            assert sorted((Path(i["filename"]).name, i["label"]) for i in ours) == \
                sorted((i["filename"], i["label"]) for i in theirs) and theirs
    out = tmp_path / "wds"
    run(folder / "elements.parquet", "--to", "webdataset", "-o", out, "--subset", cats.full)
    got = read_wds(sorted(out.glob("*.tar")))
    ok = el[el["status"] == "ok"].set_index("item_id")
    assert sorted(got) == sorted(ok.index)
    for iid, item in got.items():
        assert item["json"]["clip_id"] == ok.loc[iid, "clip_id"] and item["json"]["parent_id"] == ok.loc[iid,
                                                                                                         "parent_id"]
        assert item["cls"] == ok.loc[iid, f"{cats.full}_label"] and item["json"]["split"] == ok.loc[iid,
                                                                                                    f"{cats.full}_split"]


def test_help_explains_each_format_and_loads_no_pandas():
    from curate import export as ex
    from curate.cli import export as cli_export

    assert cli_export.FORMATS == ex.FORMATS
    text = CliRunner().invoke(cli, ["export", "--help"], terminal_width=120).output
    for fmt in ex.FORMATS:
        assert f"\n    {fmt}" in text or f"\n  {fmt}" in text, fmt
    code = ("import sys\nfrom curate.cli import cli\ntry:\n    cli(['export', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in ('torch', 'pandas', 'pyarrow') if m in sys.modules))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parent.parent)
    assert res.stdout.strip().splitlines()[-1] == "LOADED []", res.stderr
