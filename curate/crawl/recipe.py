"""Recipes: YAML -> dataclasses with strict checking (unknown keys and wrong types name their key path)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from curate.core.files import FileFormatError, read_yaml
from curate.formats import CLASS_LISTS, class_list

RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"   # the repository's recipes/, shipped in the package

T = TypeVar("T")


class RecipeError(ValueError):
    """A recipe that cannot be used; the message gives the file and key path (e.g. sources[1].quota)."""


def load_dataclass(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass `cls` from plain YAML data, checking keys and types recursively."""
    return _convert(cls, data, where or cls.__name__)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, where)
            except RecipeError as exc:
                errors.append(str(exc))
        raise RecipeError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {_name(tp)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping for {tp.__name__}, got {_kind(value)}")
        hints = typing.get_type_hints(tp)
        names = {f.name: f for f in dataclasses.fields(tp) if f.init}
        keys = {k.replace("-", "_") if isinstance(k, str) else k: k for k in value}
        unknown = [keys[k] for k in keys if k not in names]
        if unknown:
            near = {u: _closest(str(u), names) for u in unknown}
            hint = "; ".join(f"'{u}'" + (f" (did you mean '{n}'?)" if n else "") for u, n in near.items())
            raise RecipeError(f"{where}: unknown key {hint}; allowed: {', '.join(names)}")
        kwargs = {}
        for name, f in names.items():
            if name in keys:
                kwargs[name] = _convert(hints[name], value[keys[name]], f"{where}.{name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecipeError(f"{where}: missing required key '{name}'")
        try:
            return tp(**kwargs)
        except (ValueError, TypeError) as exc:
            raise RecipeError(f"{where}: {exc}") from exc
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise RecipeError(f"{where}: expected a list, got {_kind(value)}")
        (item,) = typing.get_args(tp)[:1] or (Any,)
        out = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping, got {_kind(value)}")
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {_convert(kt, k, f"{where}.<key>"): _convert(vt, v, f"{where}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise RecipeError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{where}: expected a number, got {_kind(value)}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{where}: expected an integer, got {_kind(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{where}: expected true/false, got {_kind(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise RecipeError(f"{where}: expected a string, got {_kind(value)}")
        return value
    raise RecipeError(f"{where}: unsupported type {tp}")  # a programming error in a recipe dataclass


def _kind(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"[:80]


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _closest(word: str, options: typing.Iterable[str]) -> str | None:
    import difflib
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return match[0] if match else None


# ---------------------------------------------------------------- crawl recipes


@dataclass
class TargetSpec:
    """The labelled target dataset: Kinetics-style CSVs (label,youtube_id,time_start,time_end,split[,is_cc])."""

    csv: list[str] = field(default_factory=list)
    video_url: str = "https://www.youtube.com/watch?v={youtube_id}"
    splits: list[str] = field(default_factory=lambda: ["train", "val", "test"])
    limit_per_class: int | None = None


@dataclass
class SourceSpec:
    """One web source: where candidates come from and how many per class."""

    name: str
    kind: str  # a key of curate.crawl.sources.KINDS
    provider: str | None = None  # image_search: loopback, openverse, pexels; video_search/feed: loopback, ytdlp
    media: Literal["image", "video"] | None = None  # defaults per kind
    queries: list[str] = field(default_factory=lambda: ["{label}"])
    per_class: int = 100
    per_query: int | None = None
    endpoint: str | None = None
    file: str | None = None  # urls: a .txt/.csv/.parquet list; kinetics: an annotation CSV
    ids: list[str] = field(default_factory=list)  # video_search: watch URLs or ids fetched as they are
    api_key_env: str | None = None  # keyed providers read their key from this environment variable
    split: str = "web"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DownloadSpec:
    """How fetching behaves: concurrency, politeness, caps."""

    workers: int = 16
    per_host: int = 8
    rate_per_host: float = 20.0
    timeout_s: float = 20.0
    retries: int = 3
    backoff_s: float = 0.5
    max_bytes: int = 500_000_000
    max_duration_s: float = 1200.0
    max_height: int | None = None
    respect_robots: bool = True
    respect_opt_out: bool = True
    user_agent: str | None = None
    trim: Literal["exact", "copy"] = "exact"  # exact (re-encode) or copy (stream copy, keyframe-aligned)
    segments: Literal["ranges", "full"] = "ranges"  # fetch only the span (yt-dlp download_ranges) or all, then trim
    retry_after_max_s: float = 120.0
    cookies: str | None = None
    proxy: str | None = None
    sleep_interval_s: float | None = None
    commit_every: int = 200


@dataclass
class OutputSpec:
    manifest: str = "manifests/crawl.parquet"
    data_root: str = "data"


@dataclass
class Recipe:
    """A crawl recipe: classes, the target dataset, web sources, download options and outputs."""

    name: str
    classes: list[str] = field(default_factory=list)
    classes_file: str | None = None
    target: TargetSpec | None = None
    sources: list[SourceSpec] = field(default_factory=list)
    download: DownloadSpec = field(default_factory=DownloadSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    budget: int | None = None  # rows every searching source may add together, shared out over source x class x query:
                               # evenly, or by a filter's keep rates (curate crawl --feedback); None: per_class
    base_dir: str = "."  # set by load_recipe: the recipe's folder, or the working directory for a bundled recipe

    def class_names(self) -> list[str]:
        """`classes`, else `classes_file`: a class list shipped with curate by name (curate.formats.CLASS_LISTS,
        e.g. kinetics400) or a file of one class per line, relative to base_dir."""
        if self.classes:
            return list(self.classes)
        if not self.classes_file:
            return []
        if self.classes_file in CLASS_LISTS:
            return class_list(self.classes_file)
        path = Path(self.resolve(self.classes_file))
        if not path.is_file():
            raise RecipeError(f"{self.name}.classes_file: no file {path} (and {self.classes_file!r} is not a class "
                              f"list that ships with curate: {', '.join(CLASS_LISTS)})")
        return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]

    def resolve(self, p: str) -> str:
        """A path from the recipe, relative to base_dir (lexically: a symlinked folder is not followed up); URLs
        pass through."""
        if "://" in p or Path(p).is_absolute():
            return p
        return os.path.normpath(Path(self.base_dir) / p)

    def sha(self) -> str:
        """Hash of the recipe's content (provenance column recipe_sha)."""
        data = dataclasses.asdict(self)
        data.pop("base_dir")
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def bundled_recipes() -> dict[str, Path]:
    """The recipes that ship with curate, by name (each file's `name:`) and by file stem."""
    out: dict[str, Path] = {}
    for path in sorted(RECIPE_DIR.glob("*.yaml")):
        data = read_yaml(path) or {}
        out[str(data.get("name", path.stem))] = path
        out.setdefault(path.stem, path)
    return out


def find_recipe(name_or_path: str | Path) -> tuple[Path, str | None]:
    """(recipe file, base_dir): an existing file is read with its own folder as base_dir; otherwise a bundled
    recipe of that name is, with the working directory as base_dir (its relative paths are yours)."""
    path = Path(name_or_path)
    if path.is_file():
        return path, None
    bundled = bundled_recipes()
    for key in (str(name_or_path), path.stem):
        if key in bundled:
            return bundled[key], os.getcwd()
    near = _closest(str(name_or_path), bundled)
    raise RecipeError(f"{name_or_path}: no such recipe file, and no bundled recipe of that name"
                      + (f" (did you mean {near!r}?)" if near else "") + f"; bundled: {', '.join(sorted(bundled))} "
                      "(`curate recipes` lists them)")


def parse_sets(assignments: typing.Iterable[str]) -> dict[str, Any]:
    """`KEY.PATH=VALUE` strings (values parsed as YAML) -> a nested mapping."""
    import yaml

    out: dict[str, Any] = {}
    for a in assignments:
        key, eq, value = a.partition("=")
        if not eq or not key.strip():
            raise RecipeError(f"--set wants KEY.PATH=VALUE, got {a!r}")
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return out


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def manifest_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """A recipe with no sources that fetches a manifest's own planned rows in place (the source videos `curate gym
    crawl` plans, a plan someone else made): media under the manifest's `data_root` metadata, else next to it
    in <stem>_media; download options from overrides (`download.workers` ...)."""
    from curate.core import manifest as mf

    path = Path(path)
    df = mf.read(path)
    root = mf.read_metadata(path).get("data_root") or str(path.with_name(path.stem + "_media"))
    labels = df[["label", "label_id"]].dropna().drop_duplicates("label").sort_values("label_id")
    data = {"name": path.stem, "classes": labels["label"].tolist(), "base_dir": os.getcwd(),
            "output": {"manifest": str(path), "data_root": root}}
    return load_dataclass(Recipe, _merged(data, overrides or {}), where=path.name)


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None, base_dir: str | None = None) -> Recipe:
    """Read and check a crawl recipe; overrides (a nested mapping, e.g. from parse_sets) are merged in before
    checking. Relative paths in it resolve against base_dir (default: the recipe's folder)."""
    path = Path(path)
    try:
        data = read_yaml(path)
    except FileFormatError as exc:
        raise RecipeError(str(exc)) from exc
    if data is None:
        raise RecipeError(f"{path}: the recipe is empty")
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: expected a mapping at the top level, got {_kind(data)}")
    data = _merged(data, overrides or {})
    data.setdefault("base_dir", base_dir or str(path.parent))
    recipe = load_dataclass(Recipe, data, where=path.name)
    if not recipe.class_names():
        raise RecipeError(f"{path.name}: no classes (give 'classes' or 'classes_file')")
    names = [s.name for s in recipe.sources]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RecipeError(f"{path.name}.sources: duplicate source names {dup}")
    from curate.crawl.sources import KINDS

    for i, s in enumerate(recipe.sources):
        if s.kind not in KINDS:
            near = _closest(s.kind, KINDS)
            raise RecipeError(f"{path.name}.sources[{i}].kind: {s.kind!r} is not a source kind"
                              + (f" (did you mean {near!r}?)" if near else "") + f"; kinds: {', '.join(KINDS)}")
    return recipe
