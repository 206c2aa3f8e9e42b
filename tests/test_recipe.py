"""Recipes: YAML -> dataclasses; typos and wrong types are reported with their key path."""
import pytest

from curate.crawl.recipe import Recipe, RecipeError, load_recipe

GOOD = """
name: demo
classes: [jump, run]
sources:
  - {name: images, kind: image_search, provider: loopback, queries: ["{label}", "{label} photo"], per_class: 20}
  - {name: feed, kind: feed, media: video, per_class: 5}
download: {workers: 4, timeout_s: 5}
output: {manifest: out/m.parquet, data_root: out/data}
"""


def write(tmp_path, text, name="r.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_good_recipe_loads(tmp_path):
    r = load_recipe(write(tmp_path, GOOD))
    assert isinstance(r, Recipe) and r.class_names() == ["jump", "run"]
    assert r.sources[0].queries == ["{label}", "{label} photo"] and r.download.workers == 4
    assert r.download.timeout_s == 5.0 and isinstance(r.download.timeout_s, float)
    assert r.resolve("x.csv") == str(tmp_path / "x.csv") and r.resolve("http://h/x.csv") == "http://h/x.csv"
    assert r.sha() == load_recipe(write(tmp_path, GOOD, "copy.yaml")).sha()


def test_unknown_key_names_its_path_and_suggests(tmp_path):
    with pytest.raises(RecipeError, match=r"r.yaml.sources\[1\]: unknown key 'per_clas' \(did you mean 'per_class'\?\)"):
        load_recipe(write(tmp_path, GOOD.replace("per_class: 5", "per_clas: 5")))


def test_wrong_type_names_its_path(tmp_path):
    with pytest.raises(RecipeError, match=r"r.yaml.download.workers: expected an integer, got str 'many'"):
        load_recipe(write(tmp_path, GOOD.replace("workers: 4", "workers: many")))
    with pytest.raises(RecipeError, match=r"sources\[0\].queries: expected a list"):
        load_recipe(write(tmp_path, GOOD.replace('queries: ["{label}", "{label} photo"]', "queries: 3")))


def test_missing_required_and_empty(tmp_path):
    with pytest.raises(RecipeError, match=r"sources\[0\]: missing required key 'kind'"):
        load_recipe(write(tmp_path, GOOD.replace("kind: image_search, ", "")))
    with pytest.raises(RecipeError, match="empty"):
        load_recipe(write(tmp_path, ""))
    with pytest.raises(RecipeError, match="no classes"):
        load_recipe(write(tmp_path, "name: x\n"))


def test_yaml_is_loaded_safely(tmp_path):
    evil = "name: !!python/object/apply:os.system ['echo pwned']\nclasses: [a]\n"
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(write(tmp_path, evil))


def test_classes_file_and_duplicate_sources(tmp_path):
    (tmp_path / "classes.txt").write_text("a\nb\n\nc\n")
    r = load_recipe(write(tmp_path, "name: x\nclasses_file: classes.txt\n"))
    assert r.class_names() == ["a", "b", "c"]
    dup = GOOD.replace("name: feed", "name: images")
    with pytest.raises(RecipeError, match="duplicate source names"):
        load_recipe(write(tmp_path, dup))
