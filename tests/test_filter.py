"""curate filter on the demo world: class matching, teacher scoring with resume, keep rules, precision/recall
against the world's truth, cheap filters on planted videos, clips cut from an untrimmed video, the command."""
import json
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from curate import media
from curate.clean.cheap import CheapRules, cheap_filter
from curate.clean.classes import match_classes, read_mapping
from curate.clean.filter import (
    KeepRules,
    apply_rules,
    cut_clips,
    dry_run_table,
    filter_manifest,
    merge_windows,
    window_rows,
)
from curate.clean.sidefile import read_embeddings, read_probs
from curate.clean.teacher import Ensemble, load_teacher, score_manifest
from curate.cli import cli
from curate.core import manifest as mf
from curate.core.executor import ExecutorSpec


@pytest.fixture(scope="module")
def teacher(tiny_teacher):
    return load_teacher(tiny_teacher, "cpu")


def test_classes_match_by_name_or_mapping_file(tmp_path):
    labels = {0: "square slides left", 1: "Triangle_Grows", 2: "ring rises"}
    m = match_classes(["triangle grows", "square-slides-left", "abseiling"], labels)
    assert m.to_teacher == {1: 0, 0: 1}
    assert list(m.to_label) == [1, 0, -1]
    assert m.unmatched_labels == ("ring rises",) and m.unmatched_teacher == ("abseiling",)
    # A Kinetics-400 -> Mini-Kinetics style index map: teacher index -> label id.
    (tmp_path / "map.json").write_text(json.dumps({"2": 2, "0": "triangle grows"}))
    m = match_classes(["a", "b", "c"], labels, read_mapping(tmp_path / "map.json"))
    assert m.to_teacher == {2: 2, 1: 0} and m.unmatched_labels == ("square slides left",)
    with pytest.raises(ValueError, match="not a class of the manifest"):
        match_classes(["a"], labels, {"0": "no such class"})


def _hand_scored():
    rows = []
    for label in (0, 1):
        scores = [(0.9, label), (0.8, label), (0.5, 1 - label), (0.3, label), (0.1, 1 - label)]
        for k, (score, pred) in enumerate(scores):   # the own label 2nd in the teacher's top-5 at 0.5, 3rd at 0.1
            top5 = [pred, label if score == 0.5 else 7, label if score == 0.1 else 8] if pred != label else [pred, 7, 8]
            rows.append(dict(item_id=f"{label}{k:015x}", label=f"c{label}", label_id=label, status="ok", path="x.jpg",
                             media="image", source="web_image", teacher_score=score, teacher_pred=pred,
                             teacher_top5=top5))
    rows.append(dict(item_id="f" * 16, label="c0", label_id=0, status="failed", error="http_404: gone"))
    return mf.from_records(rows)


def test_keep_rules_on_hand_made_scores():
    df = _hand_scored()
    kept = lambda out: sorted(out.loc[out["status"] == "ok", "teacher_score"].astype(float).round(3))  # noqa: E731
    out, removed = apply_rules(df, KeepRules(threshold=0.4, match=False))
    assert len(out) == len(df) and removed == {"threshold": 4}
    assert kept(out) == [0.5, 0.5, 0.8, 0.8, 0.9, 0.9]
    assert out.loc[df["teacher_score"].astype(float).round(3) == 0.1, "error"].str.startswith("teacher_low").all()
    assert out.loc[df["status"] == "failed", "error"].tolist() == ["http_404: gone"]

    out, _ = apply_rules(df, KeepRules(match=True))
    bad = out[df["teacher_pred"] != df["label_id"]]
    assert (bad.loc[bad["status"] != "failed", "error"].str.startswith("teacher_mismatch")).all()
    assert (out["status"] == "ok").sum() == 6
    out, _ = apply_rules(df, KeepRules(match=True, match_k=2))   # + the two rows with their label second
    assert kept(out) == [0.3, 0.3, 0.5, 0.5, 0.8, 0.8, 0.9, 0.9]
    assert out.loc[df["teacher_score"].astype(float).round(3) == 0.1, "error"].str.contains("nor has it in its top 2").all()
    assert apply_rules(df, KeepRules(match=True, match_k=3))[1] == {"match": 0}
    assert KeepRules(threshold=0.25, top_frac=0.5, match_k=2).describe() == \
        "p >= 0.25, best 50% per class, label in the teacher's top 2"
    assert KeepRules(match=False).describe() == "no rule"
    with pytest.raises(ValueError, match="match_k"):
        KeepRules(match_k=6)

    out, removed = apply_rules(df, KeepRules(relative=0.6, match=False))  # each class's median is 0.5: p >= 0.3
    assert kept(out) == [0.3, 0.3, 0.5, 0.5, 0.8, 0.8, 0.9, 0.9] and removed == {"relative": 2}
    halved = df.copy()            # class 1 as a teacher less sure of it scores it: half of every p
    halved.loc[halved["label_id"] == 1, "teacher_score"] *= 0.5
    out, _ = apply_rules(halved, KeepRules(relative=1.0, match=False))   # at least the class's median: 3 + 3
    assert sorted(out.loc[out["status"] == "ok", "teacher_score"].astype(float).round(3)) == \
        [0.25, 0.4, 0.45, 0.5, 0.8, 0.9]
    assert apply_rules(halved, KeepRules(threshold=0.5, match=False))[0].query("label_id == 1")["status"].eq(
        "rejected").sum() == 5    # a global threshold drops the whole class
    assert KeepRules(relative=0.6).describe() == "p >= 0.6 x its class's median, teacher top-1 = label"
    with pytest.raises(ValueError, match="above 0"):
        KeepRules(relative=0)

    out, _ = apply_rules(df, KeepRules(top_k=2, match=False))
    assert kept(out) == [0.8, 0.8, 0.9, 0.9]
    out, _ = apply_rules(df, KeepRules(top_frac=0.5, match=False))  # ceil(5 * 0.5) = 3 per class
    assert (out["status"] == "ok").sum() == 6

    table = dry_run_table(df, KeepRules(threshold=0.4, top_k=2, match=True)).set_index("class")
    assert table.loc["c0"].to_dict() == {"candidates": 5, "threshold": 3, "top_k": 2, "match": 3, "kept": 2}


def test_scoring_fills_columns_and_resumes(web_rows, teacher, tiny_world, tmp_path):
    emb = tmp_path / "emb.parquet"
    commits = []
    df, rep = score_manifest(web_rows, tiny_world.root, {"image": teacher, "video": teacher}, batch_size=8,
                             embeddings=emb, commit=lambda d: commits.append(d.copy()),
                             executor=ExecutorSpec(shard_size=16))
    usable = (web_rows["status"] == "ok") & web_rows["path"].notna()
    scored = df[df["teacher_sha"].notna()]
    assert len(scored) == usable.sum() == sum(rep.scored.values()) and rep.failed == 0
    assert scored["teacher_score"].between(0, 1).all()
    assert all(t[0] == p and len(t) == 4 for t, p in zip(scored["teacher_top5"], scored["teacher_pred"]))
    assert len(commits) == -(-rep.scored["image"] // 16) + -(-rep.scored["video"] // 16)
    vecs = read_embeddings(emb, teacher.sha)
    assert set(vecs) == set(scored["item_id"]) and len({v.shape for v in vecs.values()}) == 1
    probs = read_probs(emb)     # over the manifest's label ids, next to the embedding: what label issues read
    assert set(probs) == {(i, teacher.sha) for i in scored["item_id"]}
    for row in scored.itertuples():
        p = probs[(row.item_id, teacher.sha)]
        assert len(p) == tiny_world.spec.num_classes and np.isclose(p[row.label_id], row.teacher_score, atol=1e-6)
        assert int(p.argmax()) == row.teacher_pred

    # A run killed after its second commit resumes from what was committed: only the rest is scored. Each commit
    # holds its chunk's rows only.
    assert all(len(c) <= 16 for c in commits)
    partial = mf.upsert(web_rows.reset_index(drop=True), pd.concat(commits[:2]))
    assert 0 < partial["teacher_sha"].notna().sum() < len(scored)
    again, rep2 = score_manifest(partial, tiny_world.root, {"image": teacher, "video": teacher}, batch_size=8)
    assert sum(rep2.scored.values()) == len(scored) - partial["teacher_sha"].notna().sum()
    pd.testing.assert_series_equal(again["teacher_pred"], df["teacher_pred"])
    np.testing.assert_allclose(again["teacher_score"].astype(float), df["teacher_score"].astype(float), atol=1e-5)
    _, rep3 = score_manifest(again, tiny_world.root, {"image": teacher, "video": teacher})
    assert sum(rep3.scored.values()) == 0 and sum(rep3.reused.values()) == len(scored)


def test_an_ensemble_scores_the_geometric_mean_of_its_members(web_rows, teacher, tiny_world, tmp_path):
    import torch

    from trainers.checkpoint import save_checkpoint

    other = load_teacher(teacher.path, "cpu")     # a second member: the same net with its classifier shuffled
    with torch.no_grad():
        for p in other.model.cls_head.parameters():
            p.copy_(p[torch.randperm(p.shape[0], generator=torch.Generator().manual_seed(0))])
    save_checkpoint(tmp_path / "other.pt", other.model, other.meta)
    other = load_teacher(tmp_path / "other.pt", "cpu")
    rows = web_rows[web_rows["media"] == "image"].head(12).reset_index(drop=True)
    alone = [Ensemble([t]).score(rows, tiny_world.root)[0] for t in (teacher, other)]
    both = Ensemble([teacher, other])
    probs = both.score(rows, tiny_world.root)[0]
    assert set(probs) == set(range(len(rows)))
    for r, p in probs.items():
        expect = np.sqrt(alone[0][r] * alone[1][r])
        np.testing.assert_allclose(p, expect / expect.sum(), rtol=1e-4, atol=1e-7)
    assert not np.allclose(alone[0][0], alone[1][0])
    assert len({teacher.sha, other.sha, both.sha}) == 3 and Ensemble([teacher]).sha == teacher.sha
    scored, _ = score_manifest(rows, tiny_world.root, {"image": both})
    assert (scored["teacher_sha"] == both.sha).all()
    np.testing.assert_allclose(scored["teacher_score"].astype(float),
                               [probs[r][int(y)] for r, y in enumerate(rows["label_id"])], rtol=1e-4)
    path = mf.write(rows[list(mf.COLUMNS)], tmp_path / "rows.parquet", {"data_root": str(tiny_world.root)})
    cmd = CliRunner().invoke(cli, ["filter", str(path), "--image-teacher", str(teacher.path), "--image-teacher",
                                   str(tmp_path / "other.pt"), "--workers", "0", "--no-cheap", "--dry-run"])
    assert cmd.exit_code == 0, cmd.output
    assert "would keep" in cmd.output
    other.meta["classes"] = other.meta["classes"][::-1]
    with pytest.raises(ValueError, match="share their classes"):
        Ensemble([teacher, other])


def test_cross_fitted_teachers_score_only_the_fold_they_left_out(web_rows, teacher, tiny_world, tmp_path):
    import torch

    from trainers.checkpoint import save_checkpoint
    from trainers.sources import Holdout

    folds = []
    for fold in (0, 1):      # two members that differ (classifier rows permuted), each saying which fold it left out
        t = load_teacher(teacher.path, "cpu")
        with torch.no_grad():
            for p in t.model.cls_head.parameters():
                p.copy_(p[torch.randperm(p.shape[0], generator=torch.Generator().manual_seed(fold))])
        sources = [*t.meta["sources"], {"name": "web", "holdout": f"{fold}/2@5"}]
        save_checkpoint(tmp_path / f"f{fold}.pt", t.model, {**t.meta, "sources": sources})
        folds.append(load_teacher(tmp_path / f"f{fold}.pt", "cpu"))
    assert [t.holdout for t in folds] == [Holdout(0, 2, 5), Holdout(1, 2, 5)] and teacher.holdout is None
    rows = web_rows[web_rows["media"] == "image"].head(16).reset_index(drop=True)
    fold_of = mf.fold_of(rows, 2, 5)
    assert set(fold_of) == {0, 1}
    from curate.clean.teacher import ScoreDataset, forward, loader

    alone = [forward(t, loader(ScoreDataset(rows, tiny_world.root, t), 8, 0))[0]     # every row, for reference
             for t in (teacher, *folds)]
    probs = Ensemble(folds).score(rows, tiny_world.root)[0]
    assert set(probs) == set(range(len(rows)))
    for r, p in probs.items():            # each row by the one member that never trained on it
        np.testing.assert_allclose(p, alone[1 + fold_of[r]][r], rtol=1e-4, atol=1e-7)
    one = Ensemble(folds).score(rows.head(1), tiny_world.root)[0]     # a chunk of one row: one member has none
    np.testing.assert_allclose(one[0], probs[0], rtol=1e-4, atol=1e-7)
    mixed = Ensemble([teacher, *folds]).score(rows, tiny_world.root)[0]
    for r, p in mixed.items():            # with a plain member: the geometric mean of it and the row's fold member
        expect = np.sqrt(alone[0][r] * alone[1 + fold_of[r]][r])
        np.testing.assert_allclose(p, expect / expect.sum(), rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match=r"lack fold\(s\) \[1\]"):
        Ensemble([teacher, folds[0]])      # fold 1's rows would have no member that never saw them


def test_test_views_override_the_teachers_own_and_rescore(web_rows, teacher, tiny_world, tmp_path):
    rows = web_rows[web_rows["media"] == "image"].head(8).reset_index(drop=True)
    one, ten = Ensemble([teacher]), Ensemble([teacher], (1, 10))
    assert ten.sha != one.sha == teacher.sha != Ensemble([teacher], (1, 3)).sha
    p1, e1, _ = one.score(rows, tiny_world.root)
    p10, e10, _ = ten.score(rows, tiny_world.root)
    assert set(p10) == set(p1) and all(np.isclose(p10[r].sum(), 1, atol=1e-5) for r in p10)
    assert not np.allclose(np.stack(list(p1.values())), np.stack(list(p10.values())))
    assert e10[0].shape == e1[0].shape        # the embedding is averaged over the ten views
    scored, _ = score_manifest(rows, tiny_world.root, {"image": one})
    again, rep = score_manifest(scored, tiny_world.root, {"image": ten})   # other views: scored again, not reused
    assert rep.scored["image"] == len(rows) and rep.reused["image"] == 0 and (again["teacher_sha"] == ten.sha).all()
    path = mf.write(rows[list(mf.COLUMNS)], tmp_path / "rows.parquet", {"data_root": str(tiny_world.root)})
    cmd = CliRunner().invoke(cli, ["filter", str(path), "--teacher", str(teacher.path), "--image-views", "1x7",
                                   "--workers", "0", "--dry-run"])
    assert cmd.exit_code != 0 and "crops in [1, 3, 10]" in cmd.output, cmd.output


def test_filter_precision_beats_the_clean_rate(web_rows, teacher, tiny_world):
    """Keep iff top-1 == query class (OmniSource's rule): the kept rows are cleaner than the crawl."""
    out = filter_manifest(web_rows, tiny_world.root, {"image": teacher, "video": teacher}, KeepRules(match=True)).manifest
    judged = out[out["teacher_score"].notna()]
    clean = judged["true_label_id"] == judged["label_id"]
    kept = judged["status"] == "ok"
    precision, recall, base = clean[kept].mean(), kept[clean].mean(), clean.mean()
    print(f"\nfilter on {len(judged)} web rows: precision {precision:.3f} recall {recall:.3f} "
          f"(clean rate {base:.3f}, kept {int(kept.sum())})")
    assert kept.sum() >= 5
    assert precision > base


def _planted(tmp_path, frames, name):
    path = media.write_video(tmp_path / f"{name}.mp4", frames, fps=8)
    p = media.probe(path)
    return dict(item_id=mf.item_id("local", name), source="local", source_id=name, path=path.name, status="ok",
                **p.as_row())


def test_cheap_filters_catch_planted_black_frozen_static_videos(tiny_world, tmp_path):
    target = mf.read(tiny_world.target_manifest)
    clip = media.read_frames(tiny_world.root / target["path"][0], range(16))
    rng = np.random.default_rng(0)
    still = np.repeat(clip[:1], 16, axis=0)
    black = rng.integers(0, 6, size=(16, 64, 64, 3), dtype=np.uint8)
    frozen = np.concatenate([clip[:3], np.repeat(clip[3:4], 13, axis=0)])
    crawling = still.copy()  # the scene stands still, only a 2x2 dot crawls along: near-static, not frozen
    for k in range(16):
        crawling[k, 30:32, 10 + k:12 + k] = 255
    rows = [_planted(tmp_path, clip, "moving"), _planted(tmp_path, black, "black"),
            _planted(tmp_path, frozen, "frozen"), _planted(tmp_path, crawling, "static"),
            _planted(tmp_path, clip[:, :24, :24], "small"), _planted(tmp_path, clip[:3], "short")]
    df, rep = cheap_filter(mf.from_records(rows), tmp_path, CheapRules())
    codes = dict(zip(df["source_id"], [mf.error_code(e) for e in df["error"]]))
    assert codes == {"moving": None, "black": "black", "frozen": "frozen", "static": "static",
                     "small": "too_small", "short": "too_short"}, df["error"].tolist()
    assert rep.kept == 1 and set(rep.cost_per_kept()) == {"metadata", "pixels"}


def test_clips_cut_from_an_untrimmed_video_are_exact(tiny_world, teacher, tmp_path):
    assert merge_windows([(2.0, 4.0), (0.0, 2.0), (5.0, 7.0), (3.0, 5.0), (9.0, 10.0)]) == [
        (0.0, 7.0, [1, 0, 3, 2]), (9.0, 10.0, [4])]
    truth = mf.read(tiny_world.truth_web, validate_rows=False)
    video = truth[(truth["kind"] == "untrimmed") & (truth["status"] == "ok")].iloc[[0]].reset_index(drop=True)
    link = tmp_path / video["path"][0]
    link.parent.mkdir(parents=True)
    link.symlink_to(tiny_world.root / video["path"][0])
    out, stats = cut_clips(video, tmp_path, teacher, KeepRules(threshold=0.0, match=False), window_s=2.0,
                           stride_s=1.0, longer_than_s=4.0)
    # Every window passes a zero threshold: one clip spanning the whole video, cut exactly.
    fps, n = float(video["fps"][0]), int(video["frames"][0])
    assert stats["windows"] == stats["windows_kept"] == len(range(0, n - 16 + 1, 8)) + ((n - 16) % 8 > 0)
    clip = out[out["source"] == "clip"].iloc[0]
    assert clip["parent_id"] == video["item_id"][0] and clip["status"] == "ok"
    assert (clip["start_s"], clip["end_s"]) == (0.0, pytest.approx(n / fps))
    assert out.loc[0, "status"] == "rejected" and out.loc[0, "error"] == "untrimmed: cut into 1 clips"

    # With the median window score as the bar about half the windows stay; each clip is [start, end) of the
    # parent to the frame, and the kept windows are exactly the ones at or above the bar.
    windows, _ = score_manifest(window_rows(video.iloc[0], 2.0, 1.0), tmp_path, {"video": teacher})
    bar = float(windows["teacher_score"].median())
    out, stats = cut_clips(video, tmp_path, teacher, KeepRules(threshold=bar, match=False), 2.0, 1.0, 4.0)
    assert stats["windows_kept"] == (windows["teacher_score"] >= bar).sum() < stats["windows"]
    clips = out[out["source"] == "clip"]
    assert len(clips) >= 1
    parent = media.read_frames(link, range(n))
    for c in clips.itertuples():
        a, b = round(c.start_s * fps), round(c.end_s * fps)
        got = media.read_frames(tmp_path / c.path, range(int(c.frames)))
        assert abs(int(c.frames) - (b - a)) <= 1 and (b - a) < n
        assert np.abs(got[0].astype(int) - parent[a].astype(int)).mean() < 4.0

    # The relative rule's bar for windows is the median of the class's whole videos: a whole video of the class
    # scored at bar / 0.5 makes 0.5 x its median the same bar as above.
    # A whole video scored above twice every window's score puts the bar over them all, where 0.5 x the windows'
    # own median would keep at least half of them.
    ref = video.assign(item_id="w" * 16, teacher_score=bar / 0.5, duration_s=2.0, status="rejected")
    out, rel = cut_clips(mf.upsert(video, ref), tmp_path, teacher, KeepRules(relative=0.5, match=False), 2.0, 1.0, 4.0)
    assert rel["windows_kept"] == stats["windows_kept"]
    high = ref.assign(teacher_score=2.0 * float(windows["teacher_score"].max()) / 0.5)
    out, rel = cut_clips(mf.upsert(video, high), tmp_path, teacher, KeepRules(relative=0.5, match=False), 2.0, 1.0, 4.0)
    assert rel["windows_kept"] == 0 < (windows["teacher_score"] >= 0.5 * bar).sum()


def test_filter_command_dry_run_then_real_then_rerun(web_rows, tiny_teacher, tiny_world, tmp_path):
    path = mf.write(web_rows[list(mf.COLUMNS)], tmp_path / "web.parquet", {"data_root": str(tiny_world.root)})
    out = tmp_path / "kept.parquet"
    args = ["filter", str(path), "--teacher", str(tiny_teacher), "--out", str(out), "--threshold", "0.2",
            "--workers", "0", "--pseudo-mp4", "moving"]
    dry = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would keep" in dry.output and not out.exists()
    real = CliRunner().invoke(cli, args)
    assert real.exit_code == 0, real.output
    assert "reused 0" in real.output and "rules removed" in real.output
    df = mf.read(out)
    codes = {mf.error_code(e) for e in df["error"]}
    pseudo = df[df["source"] == "pseudo"]
    kept_images = df[(df["media"] == "image") & (df["status"] == "ok") & (df["source"] != "pseudo")]
    assert len(df) == len(web_rows) + len(pseudo) and {"teacher_low", "teacher_mismatch"} & codes
    assert set(pseudo["parent_id"]) == set(kept_images["item_id"]) and (pseudo["frames"] == 16).all()
    first = pseudo.iloc[0]
    clip = media.read_frames(tiny_world.root / first["path"], range(16)).astype(int)
    image = media.read_image(tiny_world.root / df.set_index("item_id").at[first["parent_id"], "path"]).astype(int)
    assert np.abs(clip[0] - image).mean() < 6 < np.abs(clip[-1] - image).mean()  # H(0) = identity, then it moves
    assert list((tmp_path / "kept_plots").glob("scores_*.png")) and (tmp_path / "kept_plots" / "extremes.png").exists()
    removed = int(re.search(r"rules removed: threshold (\d+)", real.output)[1])
    again = CliRunner().invoke(cli, args)                  # scores reused, the rules decide again: the same rows
    assert again.exit_code == 0 and "scored 0 rows" in again.output
    assert f"rules removed: threshold {removed}" in again.output and removed > 0
    assert "pseudo-videos (moving): 0 written" in again.output
    pd.testing.assert_frame_equal(mf.read(out), df)
    relative = [a if a != "--threshold" else "--relative" for a in args[:-2]]
    relative[relative.index("--relative") + 1] = "0.7"
    first = CliRunner().invoke(cli, [*relative, "--out", str(tmp_path / "rel.parquet")])
    kept = mf.read(tmp_path / "rel.parquet")["status"].value_counts().to_dict()
    rerun = CliRunner().invoke(cli, [*relative, "--out", str(tmp_path / "rel.parquet")])
    assert first.exit_code == rerun.exit_code == 0
    assert mf.read(tmp_path / "rel.parquet")["status"].value_counts().to_dict() == kept   # not cut deeper
