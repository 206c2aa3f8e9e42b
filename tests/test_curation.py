"""Curation beyond the keep rule, on small inputs: shots of montage videos (PySceneDetect), label issues and relabels
(Cleanlab), a reviewer's decisions (the review page in Chromium, its CSV applied by curate filter), feedback quotas."""
import html
import re
import subprocess

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from curate.clean import label_issues as li
from curate.clean.filter import KeepRules, cut_clips
from curate.clean.review import CSV_HEADER, apply_decisions, picks, read_decisions
from curate.clean.shots import ShotRules, detect_shots
from curate.clean.teacher import Ensemble, load_teacher
from curate.cli import cli
from curate.core import manifest as mf
from curate.crawl.feedback import allocate, budget_quotas, keep_rates
from tests.test_demo import _chromium


def test_shots_sit_on_the_planted_cuts_and_no_clip_crosses_one(tiny_world, tiny_teacher, tmp_path):
    truth = mf.read(tiny_world.truth_web, validate_rows=False)
    shots = pd.read_parquet(tiny_world.truth_shots)
    montages = truth[(truth["kind"] == "montage") & (truth["status"] == "ok")].head(4).reset_index(drop=True)
    for m in montages.itertuples():
        found = detect_shots(tiny_world.root / m.path, int(m.frames), float(m.fps), ShotRules())
        planted = shots.loc[(shots["video_id"] == m.source_id) & (shots["shot"] > 0), "start_frame"].tolist()
        assert len(found) == len(planted) + 1, (found, planted)
        assert all(abs(a - c) <= 1 for (a, _), c in zip(found[1:], planted)), (found, planted)
    for r in montages.itertuples():       # the files where cut_clips expects them (data root tmp_path)
        (tmp_path / r.path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / r.path).symlink_to(tiny_world.root / r.path)
    teacher = load_teacher(tiny_teacher, "cpu")
    rules = KeepRules(threshold=0.0, match=False)          # every window kept: clips as long as they may be
    plain, _ = cut_clips(montages, tmp_path, teacher, rules, 2.0, longer_than_s=4.0)
    out, stats = cut_clips(montages, tmp_path, teacher, rules, 2.0, longer_than_s=4.0, shots=ShotRules())
    assert (plain["source"] == "clip").sum() == len(montages)      # one clip per video, across every cut
    rows = out[out["source"] == "shot"]
    assert stats["shots"] == len(rows) == sum(len(shots[shots["video_id"] == v]) for v in montages["source_id"])
    assert (rows["status"] == "rejected").all() and rows["error"].str.match(r"shot: \d+ of \d+").all()
    assert rows["parent_id"].isin(montages["item_id"]).all() and (rows["path"] == rows["parent_id"].map(
        montages.set_index("item_id")["path"])).all()
    clips = out[out["source"] == "clip"]
    assert len(clips) == len(rows)                                  # one clip per shot, none crossing a boundary
    fps = tiny_world.spec.fps
    cuts = shots[shots["shot"] > 0].groupby("video_id")["start_s"].apply(list)
    vid = montages.set_index("item_id")["source_id"]
    for c in clips.itertuples():
        assert not any(c.start_s + 1 / fps < t < c.end_s - 1 / fps for t in cuts[vid[c.parent_id]])


def _probs(n_per_class=30, classes=3, wrong=0.2, seed=0):
    """Rows of `classes` classes whose label is wrong for a `wrong` share, with out-of-sample-like probabilities:
    confident on the true class."""
    rng = np.random.default_rng(seed)
    rows, probs, truth = [], {}, []
    for k in range(classes * n_per_class):
        true = k % classes
        label = (true + 1) % classes if rng.random() < wrong else true
        p = rng.dirichlet(np.ones(classes) * 0.5) * 0.3
        p[true] += 0.7
        iid = f"{k:016x}"
        rows.append(dict(item_id=iid, label=f"c{label}", label_id=label, status="ok", path="x.jpg", media="image",
                         source="web_image", query=f"c{label}" + (" meme" if k // classes % 2 else ""), teacher_sha="s",
                         teacher_score=float(p[label]), teacher_pred=int(p.argmax()), teacher_top5=[int(p.argmax())]))
        probs[(iid, "s")] = p.astype(np.float32)
        truth.append(true)
    return mf.from_records(rows), probs, np.array(truth)


def test_label_issues_flag_the_wrong_labels_and_relabels_keep_lineage():
    df, probs, true = _probs()
    out = li.label_issues(df, df["status"] == "ok", probs)
    wrong = out["label_id"].to_numpy() != true
    flag = out["label_issue"].astype(bool).to_numpy()
    assert flag[wrong].mean() >= 0.9 and wrong[flag].mean() >= 0.8
    np.testing.assert_allclose(out["self_confidence"].astype(float), df["teacher_score"].astype(float), rtol=1e-6)
    rates = li.noise_rates(out, "label")
    assert set(rates.columns) == {"label", "rows", "issues", "noise_rate"} and rates["rows"].sum() == len(df)
    kept, n = li.relabel(out, 0.6)
    moved = kept["original_label_id"].notna()
    assert n == moved.sum() > 0 and (kept.loc[moved, "label_id"].to_numpy() == true[moved]).mean() >= 0.9
    assert (kept.loc[moved, "original_label_id"] == out.loc[moved, "label_id"]).all()
    back = li.undo_relabels(kept)
    pd.testing.assert_series_equal(back["label_id"], out["label_id"])
    np.testing.assert_allclose(back["teacher_score"].astype(float), out["teacher_score"].astype(float), rtol=1e-6)
    with pytest.raises(ValueError, match="no stored class probabilities"):
        li.label_issues(df, df["status"] == "ok", {})


def test_label_issues_are_refused_for_teachers_that_trained_on_the_web_rows(tiny_teacher, tmp_path):
    from trainers.checkpoint import save_checkpoint

    target_only = load_teacher(tiny_teacher, "cpu")
    li.check_out_of_sample({"image": target_only})                   # never saw a web row
    seen = {**target_only.meta, "sources": [*target_only.meta["sources"], {"name": "web"}]}
    save_checkpoint(tmp_path / "seen.pt", target_only.model, seen)
    with pytest.raises(ValueError, match=r"in-sample|trained on the web rows.*seen.pt \(web\)"):
        li.check_out_of_sample({"image": Ensemble([load_teacher(tmp_path / "seen.pt", "cpu")])})


def test_filter_relabels_then_a_reviewer_decides_in_the_page(web_rows, tiny_teacher, tiny_world, tmp_path):
    path = mf.write(web_rows[list(mf.COLUMNS)], tmp_path / "web.parquet", {"data_root": str(tiny_world.root)})
    out = tmp_path / "kept.parquet"
    run = CliRunner().invoke(cli, ["filter", str(path), "--teacher", str(tiny_teacher), "--out", str(out),
                                   "--relative", "1.0", "--no-match", "--relabel", "0.5", "--workers", "0"])
    assert run.exit_code == 0, run.output
    assert "label issues:" in run.output and "estimated noise rate per query" in " ".join(run.output.split())
    df = mf.read(out)
    assert df["label_issue"].notna().sum() == df["teacher_score"].notna().sum()
    moved = df["original_label_id"].notna()
    n = int(re.search(r"relabelled \(kept under the suggested label\): (\d+)", " ".join(run.output.split()))[1])
    assert moved.sum() == n and (df.loc[moved, "status"] == "ok").all()
    assert (df.loc[moved, "label_id"] == df.loc[moved, "suggested_label_id"]).all()
    again = CliRunner().invoke(cli, ["filter", str(path), "--teacher", str(tiny_teacher), "--out", str(out),
                                     "--relative", "1.0", "--no-match", "--relabel", "0.5", "--workers", "0"])
    assert again.exit_code == 0 and "scored 0 rows" in again.output
    pd.testing.assert_frame_equal(mf.read(out), df)               # a rerun relabels the same rows, no deeper

    page = tmp_path / "review.html"
    assert CliRunner().invoke(cli, ["review", str(out), "-o", str(page), "--per-class", "4"]).exit_code == 0
    text = page.read_text()
    assert "http://" not in text.replace("http://127.0.0.1", "") and text.count("class='class'") == 4
    border = pd.concat([p["borderline"] for p in picks(df, 4).values()])
    assert (border["status"] == "ok").any() and (border["status"] != "ok").any()     # both sides of the threshold
    keep_id = border.loc[border["status"] != "ok", "item_id"].iloc[0]
    drop_id = border.loc[border["status"] == "ok", "item_id"].iloc[0]
    judged = df[df["teacher_score"].notna()]
    relabel_id = next(i for i in judged["item_id"] if f"data-id='{i}'" in text and i not in (keep_id, drop_id))
    browser = _chromium()
    if browser is None:
        csv = f"{CSV_HEADER}\n{keep_id},keep,\n{drop_id},drop,\n{relabel_id},relabel,{tiny_world.classes[2]}\n"
    else:       # the page's own script builds the CSV from decisions given in its link (#d=...)
        for iid in (keep_id, drop_id):
            assert f"data-id='{iid}'" in text, iid      # a borderline item on each side of the keep threshold
        flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'p'}",
                 "--virtual-time-budget=3000", "--dump-dom"]
        dom = subprocess.run([browser, *flags, page.as_uri() + f"#d={keep_id}:keep,{drop_id}:drop,{relabel_id}:relabel:2"],
                             capture_output=True, text=True, timeout=120, check=True).stdout
        assert 'class="class"' in dom and dom.count("nearest the keep threshold") == 4
        csv = html.unescape(re.search(r'<textarea id="csv" readonly="">(.*?)</textarea>', dom, re.S)[1])
        assert csv.startswith(CSV_HEADER) and csv.count("\n") == 4, csv
    (tmp_path / "decisions.csv").write_text(csv)
    decided = CliRunner().invoke(cli, ["filter", str(out), "--decisions", str(tmp_path / "decisions.csv"),
                                       "--out", str(tmp_path / "reviewed.parquet")])
    assert decided.exit_code == 0, decided.output
    assert "keep 1, drop 1, relabel 1" in decided.output
    got = mf.read(tmp_path / "reviewed.parquet").set_index("item_id")
    assert got.at[keep_id, "status"] == "ok" and got.at[drop_id, "error"].startswith("review_drop")
    assert got.at[relabel_id, "label"] == tiny_world.classes[2] and pd.notna(got.at[relabel_id, "original_label"])


def test_decisions_refuse_unknown_items_and_classes(tmp_path):
    df, _, _ = _probs(4)
    (tmp_path / "d.csv").write_text(f"{CSV_HEADER}\n{df['item_id'][0]},relabel,no such class\n")
    with pytest.raises(ValueError, match="not a class"):
        apply_decisions(df, read_decisions(tmp_path / "d.csv"))
    (tmp_path / "d.csv").write_text(f"{CSV_HEADER}\nffffffffffffffff,drop,\n")
    with pytest.raises(ValueError, match="not in the manifest"):
        apply_decisions(df, read_decisions(tmp_path / "d.csv"))
    (tmp_path / "d.csv").write_text(f"{CSV_HEADER}\n{df['item_id'][0]},maybe,\n")
    with pytest.raises(ValueError, match="not one of"):
        read_decisions(tmp_path / "d.csv")


def test_feedback_shares_the_budget_by_keep_rate(tmp_path):
    from curate.crawl.recipe import RECIPE_DIR, load_recipe

    assert allocate({"a": 3, "b": 1}, 10) == {"a": 8, "b": 2} and sum(allocate({"a": 1, "b": 1, "c": 1}, 10).values()) == 10
    df, _, _ = _probs(20, classes=2, wrong=0.0)
    labels = {"c0": 0, "c1": 1}
    df.loc[df["query"].str.endswith("meme") & (np.arange(len(df)) // 4 % 2 == 1), ["status", "error"]] = [
        "rejected", "teacher_low: p=0.1 fails relative"]
    rates = keep_rates(df).set_index("query")["rate"]
    assert rates["c0"] == 1.0 and rates["c0 meme"] == pytest.approx(0.5)
    recipe = load_recipe(RECIPE_DIR / "demo.yaml", {"classes": ["c0", "c1"], "budget": 40, "sources": [
        {"name": "web_images", "kind": "image_search", "queries": ["{label}", "{label} meme"], "per_class": 10}]})
    even, _ = budget_quotas(recipe, labels)
    assert set(even.values()) == {10}
    fed, table = budget_quotas(recipe, labels, df)
    assert sum(fed.values()) == 40 and fed[("web_images", "c0", "c0")] > fed[("web_images", "c0", "c0 meme")]
    assert list(table.columns[:3]) == ["source name", "label", "query"]


def test_efficiency_prices_an_item_of_each_media():
    from curate.experiments.efficiency import item_values

    table = pd.DataFrame({"source": ["target_only", "images", "images", "videos"], "fraction": [0.0, 0.5, 1.0, 1.0],
                          "items": [0, 50, 100, 20], "gigabytes": [0, 0.005, 0.01, 0.02], "top1": [0.4, 0.45, 0.5, 0.3]})
    assert item_values(table) == {"image": pytest.approx(0.1 / 100), "video": 0.0}


def test_a_feedback_crawl_follows_the_quotas(web, tiny_world, tmp_path):
    from curate.crawl.crawler import crawl
    from curate.crawl.recipe import RECIPE_DIR, load_recipe

    classes = tiny_world.classes
    recipe = load_recipe(RECIPE_DIR / "demo.yaml", {
        "classes": classes, "budget": 8 * len(classes), "target": None,
        "output": {"manifest": str(tmp_path / "m.parquet"), "data_root": str(tmp_path / "data")},
        "sources": [{"name": "web_images", "kind": "image_search", "endpoint": web.url,
                     "queries": ["{label}", "{label} meme"], "per_class": 8}]})
    first = crawl(recipe)
    assert first.quotas["quota"].tolist() == [4] * 2 * len(classes)
    got = first.df[first.df["status"] == "ok"].groupby("query").size()
    assert got.max() <= 4 and set(got.index) == {q for c in classes for q in (c, f"{c} meme")}
    fed = first.df.assign(teacher_sha="s", status=np.where(first.df["query"].str.endswith("meme"), "rejected", "ok"),
                          error=np.where(first.df["query"].str.endswith("meme"), "teacher_low: x", None))
    second = crawl(recipe, feedback=fed)
    meme = second.quotas["query"].str.endswith("meme")
    assert second.quotas.loc[~meme, "quota"].min() > second.quotas.loc[meme, "quota"].max()
    assert (tmp_path / "m.parquet.quotas.csv").exists()
