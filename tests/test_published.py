"""Published MMAction2 weights (curate weights import / export): MMAction2's own scores, recorded by
tests/tools/record_mmaction2.py under MMAction2 1.2.0 (tests/data/mmaction2), come out of every converted family;
the conversion goes back key for key; full-size state dicts match name for name and shape for shape; files with
pickled extras load without running them; weights that do not fit are refused; a converted Kinetics-400 teacher
scores the demo world's crawl through `curate filter`."""
import gzip
import json

import pytest
import torch
from click.testing import CliRunner
from tools.mmaction2_cases import CASES, FULL_SIZE, RUNNER_CHECKPOINT, load_fixture, mmaction2_state, ours_layout, seeded

from curate.clean.sidefile import read_embeddings
from curate.clean.teacher import Ensemble, load_teacher
from curate.cli import cli
from curate.core import manifest as mf
from curate.formats import class_list
from trainers.checkpoint import load_checkpoint
from trainers.config import build_model, load_model_config
from trainers.inputs import pipeline_config
from trainers.keymap import KeyMapError, fit
from trainers.mmaction2 import FAMILIES
from trainers.published import Published, PublishedError, convert, family_of, import_weights, read_published

NORMS = torch.nn.modules.batchnorm._BatchNorm


def ucf_like(path):
    """C3D's fixture is a UCF-101 model, and no UCF-101 list ships: --classes names its 101 classes."""
    path.write_text("".join(f"class {i}\n" for i in range(101)))
    return path


def classes_for(name, tmp_path):
    return ucf_like(tmp_path / "ucf101.txt") if name == "c3d" else None


def write_mmaction2(name, path):
    """The fixture's weights as MMAction2 1.x saves a checkpoint: {'state_dict', 'meta'}."""
    torch.save({"state_dict": mmaction2_state(load_fixture(name)), "meta": {"mmaction2_version": "1.2.0"}}, path)
    return path


@pytest.mark.parametrize("name", list(CASES))
def test_converted_weights_give_mmaction2s_scores(name, tmp_path, capsys):
    fixture, case = load_fixture(name), CASES[name]
    model, _ = convert(Published(mmaction2_state(fixture), {}), "mmaction2", name, classes_for(name, tmp_path),
                       case.ours)
    x = ours_layout(seeded(fixture["input"]), case)
    with torch.no_grad():
        scores, logits = model.predict(x), model(x)
    diff = (scores - fixture["scores"]).abs().max().item()
    with capsys.disabled():
        print(f"\n  {name:<22} max |p_ours - p_mmaction2| {diff:.1e}  (logits up to {logits.abs().max():.1f})")
    assert diff < 1e-4
    torch.testing.assert_close(logits, fixture["logits"], rtol=1e-4, atol=1e-4)
    norms = [m for m in model.modules() if isinstance(m, NORMS)]
    if norms:   # the recorded BatchNorm statistics matter: a converter that dropped them would fail above
        for m in norms:
            m.reset_running_stats()
        with torch.no_grad():
            assert (model.predict(x) - fixture["scores"]).abs().max() > 1e-3


@pytest.mark.parametrize("name", list(CASES))
def test_test_views_are_those_of_the_mmaction2_config(name, tmp_path):
    theirs = load_fixture(name)["test"]
    _, meta = convert(Published(mmaction2_state(load_fixture(name)), {}), "mmaction2", name,
                      classes_for(name, tmp_path), CASES[name].ours)
    steps = {s["type"]: s for s in pipeline_config(meta["data"], train=False)}
    assert {k: steps["SampleFrames"][k] for k in ("clip_len", "frame_interval", "num_clips")} == \
        {k: theirs[k] for k in ("clip_len", "frame_interval", "num_clips")}
    assert [-1, steps["Resize"]["scale"]] == theirs["resize"]
    assert steps[theirs["crop"]]["size"] == theirs["crop_size"]
    assert (steps["Normalize"]["mean"], steps["Normalize"]["std"]) == (theirs["mean"], theirs["std"])
    assert (meta["data"]["input_format"] == "NCTHW") == (theirs["format_shape"] == "NCTHW")
    assert FAMILIES[name].config == load_fixture(name)["config"]


@pytest.mark.parametrize("name", list(CASES))
def test_mmaction2_to_curate_to_mmaction2_gives_the_same_tensors(name, tmp_path):
    src = write_mmaction2(name, tmp_path / "mma.pth")
    runner = CliRunner()
    classes = classes_for(name, tmp_path)
    made = runner.invoke(cli, ["weights", "import", str(src), "--from", "mmaction2", "--model", name, "-o",
                               str(tmp_path / "ours.pt"), *[a for s in CASES[name].ours for a in ("--set", s)],
                               *(["--classes", str(classes)] if classes else [])])
    assert made.exit_code == 0, made.output
    _, meta = load_checkpoint(tmp_path / "ours.pt")
    assert meta["source"]["format"] == "mmaction2" and meta["source"]["model"] == name
    assert len(meta["source"]["sha256"]) == 64 and meta["source"]["config"] == FAMILIES[name].config
    assert meta["classes"] == (class_list("kinetics400") if classes is None else classes.read_text().splitlines())
    back = runner.invoke(cli, ["weights", "export", str(tmp_path / "ours.pt"), "--to", "mmaction2", "-o",
                               str(tmp_path / "back.pth")])
    assert back.exit_code == 0, back.output
    exported = torch.load(tmp_path / "back.pth", weights_only=True)
    original = torch.load(src, weights_only=True)["state_dict"]
    assert list(exported["state_dict"]) == list(original) or set(exported["state_dict"]) == set(original)
    for key, value in original.items():
        assert exported["state_dict"][key].shape == value.shape and torch.equal(exported["state_dict"][key], value), key
    assert exported["meta"]["dataset_meta"]["classes"] == meta["classes"]


def test_full_size_models_match_mmaction2_name_for_name_and_shape_for_shape():
    """MMAction2's full-size state dicts (names and shapes, recorded) fit ours exactly, ip-CSN's BN included."""
    recorded = json.loads(gzip.open(FULL_SIZE, "rt", encoding="utf-8").read())
    assert set(recorded) == set(FAMILIES)
    for name, theirs in recorded.items():
        with torch.device("meta"):
            ours = build_model(load_model_config(name)["model"])
            state = {k: torch.empty(s) for k, s in theirs["state_dict"]}
        fitted = fit(state, ours.state_dict(), FAMILIES[name].keymap, name)   # raises on any name or shape
        assert len(fitted) == len(state) and sum(p.numel() for p in ours.parameters()) == theirs["params"], name


def test_a_checkpoint_of_our_own_training_exports_under_its_familys_names():
    for name in FAMILIES:      # what `curate train --model NAME` writes in meta['model'] finds its family
        assert family_of(load_model_config(name, tiny=True)["model"]) == name
    with pytest.raises(PublishedError, match="no counterpart of a S3D backbone"):
        family_of(load_model_config("s3d")["model"])


def test_a_runner_checkpoint_loads_without_running_its_pickles():
    """mmengine's Runner saves log buffers and numpy values weights_only refuses: they are read as placeholders,
    skipped and named; the weights convert as the plain file's do."""
    model, meta = import_weights(RUNNER_CHECKPOINT, "mmaction2", "timesformer_spaceonly",
                                 sets=CASES["timesformer_spaceonly"].ours)
    skipped = " ".join(meta["source"]["skipped"])
    assert "'message_hub'" in skipped and "'optimizer'" in skipped and "HistoryBuffer" in skipped
    assert meta["source"]["meta"]["mmengine_version"] and "cfg" in meta["source"]["meta"]
    fixture = load_fixture("timesformer_spaceonly")
    with torch.no_grad():
        scores = model.predict(ours_layout(seeded(fixture["input"]), CASES["timesformer_spaceonly"]))
    assert (scores - fixture["scores"]).abs().max() < 1e-4


def _touch(path):          # what unpickling the file below would run
    open(path, "w").close()


class Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return _touch, (self.path,)


def test_pickled_code_in_a_file_never_runs(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"state_dict": {"w": torch.ones(2)}, "meta": {"note": Payload(str(marker)), "epoch": 3},
                "extra": Payload(str(marker))}, tmp_path / "mixed.pth")
    pub = read_published(tmp_path / "mixed.pth")
    assert not marker.exists()
    assert list(pub.state_dict) == ["w"] and pub.meta == {"epoch": 3}
    assert "'extra' (not weights)" in pub.skipped and "_touch" in pub.skipped[-1]
    torch.save({"state_dict": {"w": torch.ones(2), "bad": Payload(str(marker))}}, tmp_path / "bad.pth")
    with pytest.raises(PublishedError, match="non-tensors"):
        read_published(tmp_path / "bad.pth")
    torch.save({"state_dict": {"w": torch.ones(2)}, "extra": Payload(str(marker))}, tmp_path / "legacy.pth",
               _use_new_zipfile_serialization=False)   # torch < 1.6's format: no list of its globals to stand in for
    with pytest.raises(PublishedError, match=r"legacy .*\(Unsupported global: GLOBAL test_published._touch\)"):
        read_published(tmp_path / "legacy.pth")
    assert not marker.exists()


def test_weights_that_do_not_fit_are_refused_with_what_differs(tmp_path):
    src = write_mmaction2("i3d_r50", tmp_path / "i3d.pth")
    with pytest.raises(KeyMapError, match=r"does not fit: different shapes \(\d+\): backbone.conv1.conv.weight"):
        import_weights(src, "mmaction2", "slowonly_r50", sets=CASES["i3d_r50"].ours)
    cmd = CliRunner().invoke(cli, ["weights", "import", str(src), "--from", "mmaction2", "--model", "x3d_m",
                                   "-o", str(tmp_path / "x.pt")])
    assert cmd.exit_code != 0 and "missing (" in cmd.output and "unexpected (" in cmd.output, cmd.output
    (tmp_path / "five.txt").write_text("a\nb\nc\nd\ne\n")
    with pytest.raises(PublishedError, match="names 5 classes, the classifier has 400"):
        import_weights(src, "mmaction2", "i3d_r50", classes=tmp_path / "five.txt", sets=CASES["i3d_r50"].ours)
    with pytest.raises(PublishedError, match="no counterpart"):
        import_weights(src, "mmaction2", "s3d")


def test_a_converted_kinetics_teacher_filters_the_demo_crawl(web_rows, tiny_world, tmp_path):
    """The plumbing end to end: a random-weight K400 SlowOnly from MMAction2, the demo's classes mapped to four
    Kinetics classes, `curate filter --teacher`; the scores mean nothing, their shapes and classes do."""
    src = write_mmaction2("slowonly_r50", tmp_path / "slowonly.pth")
    runner = CliRunner()
    made = runner.invoke(cli, ["weights", "import", str(src), "--from", "mmaction2", "--model", "slowonly_r50",
                               "--set", "model.backbone.base_channels=8", "-o", str(tmp_path / "k400_slowonly.pt")])
    assert made.exit_code == 0 and "10 clips x 3 crops of 256" in made.output, made.output
    kinetics = ["abseiling", "air drumming", "archery", "bowling"]
    (tmp_path / "map.json").write_text(json.dumps(dict(zip(kinetics, tiny_world.classes))))
    crawl = web_rows[web_rows["status"] == "ok"].groupby(["media", "label_id"]).head(2)   # 2 per class and media
    web = mf.write(crawl[list(mf.COLUMNS)], tmp_path / "web.parquet", {"data_root": str(tiny_world.root)})
    cmd = runner.invoke(cli, ["filter", str(web), "--teacher", str(tmp_path / "k400_slowonly.pt"), "--class-map",
                              str(tmp_path / "map.json"), "--video-views", "1x1", "--image-views", "1x1",
                              "--workers", "0", "--no-match", "--out", str(tmp_path / "out.parquet")])
    assert cmd.exit_code == 0, cmd.output
    out = mf.read(tmp_path / "out.parquet")
    scored = out[out["teacher_sha"].notna()]
    teacher = load_teacher(tmp_path / "k400_slowonly.pt", "cpu")
    assert teacher.classes == class_list("kinetics400") and next(iter(teacher.meta["input"].values()))["size"] == 256
    assert len(scored) == len(crawl) == 16 and (scored["teacher_sha"] == Ensemble([teacher], (1, 1)).sha).all()
    assert scored["teacher_score"].between(0, 1).all() and scored["teacher_score"].max() < 0.5   # 400 classes
    assert all(len(t) == 5 and set(t) <= {-1, 0, 1, 2, 3} for t in scored["teacher_top5"])
    rows = crawl.reset_index(drop=True)          # the score is the probability of the row's class's Kinetics class
    probs = Ensemble([teacher], (1, 1)).score(rows, tiny_world.root)[0]
    kinetics_index = {c: teacher.classes.index(k) for k, c in zip(kinetics, tiny_world.classes)}
    expected = {rows["item_id"][r]: p[kinetics_index[rows["label"][r]]] for r, p in probs.items()}
    got = scored.set_index("item_id")["teacher_score"]
    assert max(abs(got[i] - p) for i, p in expected.items()) < 1e-6
    assert set(scored["media"]) == {"image", "video"}
    vectors = read_embeddings(tmp_path / "out.emb.parquet", Ensemble([teacher], (1, 1)).sha)
    assert set(vectors) == set(scored["item_id"]) and {v.shape for v in vectors.values()} == {(256,)}


def test_a_converted_checkpoint_works_where_checkpoints_do(tiny_world, tmp_path):
    """`eval` scores with it (its own test views, here cut to one), `train --init` starts from its backbone."""
    src = write_mmaction2("slowonly_r50", tmp_path / "slowonly.pth")
    runner = CliRunner()
    ckpt = tmp_path / "k400.pt"
    base = ("--set", "model.backbone.base_channels=8")
    assert runner.invoke(cli, ["weights", "import", str(src), "--from", "mmaction2", "--model", "slowonly_r50",
                               *base, "-o", str(ckpt)]).exit_code == 0
    scored = runner.invoke(cli, ["eval", str(ckpt), str(tiny_world.target_manifest), "--views", "1x1",
                                 "--out", str(tmp_path / "eval")])
    assert scored.exit_code == 0 and (tmp_path / "eval" / "metrics.json").exists(), scored.output
    trained = runner.invoke(cli, ["train", str(tiny_world.target_manifest), "--model", "slowonly_r50", *base,
                                  "--init", str(ckpt), "--epochs", "1", "--batch-size", "4", "--size", "32",
                                  "--clip-len", "4", "--val-split", "none", "--out", str(tmp_path / "run")])
    assert trained.exit_code == 0, trained.output
    assert "head re-initialised" in trained.output and "missing" not in trained.output
    init = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert init["event"] == "init" and init["loaded"] == len(load_checkpoint(ckpt)[0].state_dict()) - 2
