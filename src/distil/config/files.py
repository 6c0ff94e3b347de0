"""Reading a config: YAML → command-line overrides → validation → paths resolved; and writing it back.

Command-line overrides (``student.epochs=5``) are applied to the raw mapping before validation, so
they are checked exactly like the file. Errors name the file, the field and what was expected.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from distil.config.experiment import ExperimentConfig
from distil.config.strategy import strategy_options
from distil.errors import ConfigError, DistilError
from distil.pretrained import HF_PREFIX, PACKAGED


def dump_config(config: ExperimentConfig) -> dict[str, Any]:
    """The config as a run writes it to ``config.yaml`` (and ``--resume`` compares it): every value,
    except that each of ``distill.terms`` keeps only the fields that were given. A term's unset fields
    mean "the preset's value" (:meth:`DistillConfig.term_specs`), so writing their defaults would make
    the file, run again, train another objective.
    """
    raw = config.model_dump(mode="json", serialize_as_any=True)  # strategy: the options class of its name, not the base
    raw["distill"]["terms"] = [t.model_dump(mode="json", exclude_unset=True) for t in config.distill.terms]
    return raw


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read, override and validate a YAML experiment config; relative paths resolve next to the file."""
    path = Path(path)
    config = validate_config(read_raw(path, overrides), source=str(path))
    return resolve_paths(config, path.parent)


def read_raw(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The YAML mapping with the overrides applied, not yet validated (a sweep derives its trials from it)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, teacher, student, ...), got {type(raw).__name__}")
    for item in overrides:
        apply_override(raw, item)
    return raw


def validate_config(raw: dict[str, Any], source: str = "config") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, raw)) from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply ``a.b.c=value`` to the raw mapping; the value is parsed as YAML (``5``, ``0.1``, ``[8, 16]``)."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. student.epochs=5")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    set_path(raw, key, value)


# Lists whose entries are addressed by one of their fields: ``distill.terms.KD.params.T=2`` sets T of
# the term whose loss is KD, adding ``{loss: KD}`` if the file has none (it then updates the preset's KD).
# Any list's entries are also addressed by position: ``strategy.teachers.0.weights=t.safetensors``.
KEYED_LISTS = {("distill", "terms"): "loss"}


def set_path(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set the dotted ``key`` of the raw mapping to ``value``, creating sections on the way.

    A part of the key that meets a list is a position in it (``strategy.teachers.1.weights``; ``-1`` is
    the last) or, for the lists of :data:`KEYED_LISTS`, the value of the entry's key field.
    """
    node: Any = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = _list_entry(node, parts[:i], part, key)
            if not isinstance(node, dict | list):
                raise ConfigError(f"override {key!r}: {'.'.join(parts[: i + 1])} is {node!r}, not a mapping; set the whole entry or list instead")
            continue
        keyed = tuple(parts[: i + 1]) in KEYED_LISTS
        child = node.get(part)
        if child is None:
            child = node[part] = [] if keyed else {}
        if not isinstance(child, dict | list):
            raise ConfigError(f"override {key!r}: {'.'.join(parts[: i + 1])} is {child!r}, not a section")
        node = child
    if isinstance(node, list):
        if not _is_position(parts[-1]):
            where = ".".join(parts[:-1])
            hint = f"name a field of the entry, e.g. {key}.weight" if tuple(parts[:-1]) in KEYED_LISTS else f"{where} is a list; give a position, e.g. {where}.0"
            raise ConfigError(f"override {key!r}: {hint}")
        node[_position(node, parts[:-1], parts[-1], key)] = value
        return
    node[parts[-1]] = value


def _is_position(part: str) -> bool:
    return re.fullmatch(r"-?[0-9]+", part) is not None


def _position(entries: list[Any], prefix: list[str], part: str, key: str) -> int:
    index = int(part)
    where = ".".join(prefix)
    if not entries:
        raise ConfigError(f"override {key!r}: {where} is empty; set the whole list, e.g. {where}=[...]")
    if not -len(entries) <= index < len(entries):
        raise ConfigError(f"override {key!r}: {where} has {len(entries)} entries (positions 0-{len(entries) - 1}), not {index}")
    return index


def _list_entry(entries: list[Any], prefix: list[str], part: str, key: str) -> Any:
    if _is_position(part):
        return entries[_position(entries, prefix, part, key)]
    field = KEYED_LISTS.get(tuple(prefix))
    if field is None:
        where = ".".join(prefix)
        rest = key[len(where) + 1 :].partition(".")[2]
        raise ConfigError(f"override {key!r}: {where} is a list; address an entry by its position, e.g. {where}.0.{rest}")
    for entry in entries:
        if not isinstance(entry, dict):
            raise ConfigError(f"override {key!r}: the list holds {entry!r}, not a mapping with {field!r}")
        if entry.get(field) == part:
            return entry
    entries.append({field: part})
    return entries[-1]


def resolve_paths(config: ExperimentConfig, base: Path) -> ExperimentConfig:
    def resolve(p: str | None) -> str | None:
        return str((base / p).resolve()) if p and not Path(p).is_absolute() else p

    return map_paths(config, resolve)


def map_paths(config: ExperimentConfig, fn: Callable[[str | None], str | None]) -> ExperimentConfig:
    """Apply ``fn`` to every file path of the config (data, tokenizer and ``hf:`` model folders,
    teacher weights, the strategy's)."""
    teacher = config.teacher.model_copy(update={"weights": fn(config.teacher.weights), "arch": _folder_spec(config.teacher.arch, fn)}) if config.teacher else None
    student = config.student.model_copy(update={"arch": _folder_spec(config.student.arch, fn)})
    data = config.data.model_copy(update={"path": fn(config.data.path), "tokenizer": _folder_spec(config.data.tokenizer, fn, bare=True)})
    return config.model_copy(update={"teacher": teacher, "student": student, "data": data, "strategy": config.strategy.resolve_paths(fn)})


def _folder_spec(spec: str | None, fn: Callable[[str | None], str | None], *, bare: bool = False) -> str | None:
    """``fn`` applied to the folder of ``"hf:PATH"`` (and, with ``bare``, to a plain path that is not a
    packaged short name such as ``minilm``); any other spec unchanged."""
    if spec is None or spec in PACKAGED or spec.removeprefix(HF_PREFIX).startswith("~"):
        return spec
    if spec.startswith(HF_PREFIX):
        return HF_PREFIX + str(fn(spec[len(HF_PREFIX) :]))
    return fn(spec) if bare else spec


def format_validation_error(err: ValidationError, source: str, raw: dict[str, Any] | None = None, root: type[BaseModel] | None = None) -> str:
    """One line per problem: the field's dotted path and what was wrong (for an unknown key, the
    accepted keys there and the closest one). ``raw`` is the mapping validated: it says which
    strategy's options the ``strategy`` keys belong to; ``root`` is the config validated (default
    :class:`ExperimentConfig`; a translation config passes its own)."""
    lines = [f"{source}: invalid config"]
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        where = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            known = _known_keys(loc[:-1], raw or {}, root or ExperimentConfig)
            close = difflib.get_close_matches(loc[-1], known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            lines.append(f"  {where}: unknown key{hint}; accepted keys here: {', '.join(known)}")
        elif e["type"] == "missing":
            lines.append(f"  {where}: required field is missing")
        else:
            lines.append(f"  {where}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def _known_keys(loc: list[str], raw: dict[str, Any], root: type[BaseModel] = ExperimentConfig) -> list[str]:
    model: type[BaseModel] = root
    tag: str | None = None  # a discriminated union's tag in the path (``strategy.ensemble.teachers``): the member it names
    for depth, part in enumerate(loc):
        if part.isdigit() and depth > 0:  # an item of a list of sections: its keys are the item's
            continue
        if part == tag:
            tag = None
            continue
        if depth == 0 and part == "strategy" and root is ExperimentConfig:
            section = raw.get("strategy")
            name = section.get("name", "none") if isinstance(section, dict) else "none"
            try:
                model = strategy_options(name)
            except (ValueError, DistilError):
                return []
            continue
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        # an optional section (``compress: CompressConfig | None``): its keys are the section's; a union of
        # sections told apart by ``name`` (a translation's ``strategy``): the one the path's next part names
        sections = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        tagged = {t: a for a in sections if "name" in a.model_fields for t in typing.get_args(a.model_fields["name"].annotation)}
        if len(sections) > 1 and depth + 1 < len(loc) and loc[depth + 1] in tagged:
            tag = loc[depth + 1]
            annotation = tagged[tag]
        else:
            annotation = next(iter(sections), annotation)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
