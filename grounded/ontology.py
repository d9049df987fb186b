"""Ontology: the classes to find and the phrases that mean them.

An ontology maps one or more text phrases (synonyms) to each class. The detector is prompted with every
phrase; a detection matched to any phrase of a class gets that class's id. Class ids are the classes' order
in the ontology (0-based), stable across runs, and never depend on which phrase matched.

Sources::

    Ontology.from_prompt("a wheel")                  # one class, named "a wheel"
    Ontology.from_prompt("car . wheel .")            # Grounding-DINO caption (" . " separates): "car", "wheel"
    Ontology.from_prompt("2.5 ton truck . st. bernard .")   # dots inside phrases stay: "2.5 ton truck", "st. bernard"
    Ontology.from_prompt(["car", "headlight"])       # list of class names
    Ontology.from_classes("car, wheel, dog")         # comma-separated (the CLI's --classes)
    Ontology.from_yaml("prompts/car_parts.yaml")     # file with synonyms and per-class thresholds

Captions: phrases are separated only by a dot with white space on both sides (``" . "``) or by a dot that
ends the caption; a dot inside a phrase (``2.5``, ``st.``, ``e.g.``) is part of it. Without such a separator
the whole string is one class, whatever commas it holds (``--classes`` / :meth:`Ontology.from_classes` split
on commas).

YAML files are read as UTF-8. Every error quotes at most ~200 characters of the input
(:func:`grounded.errors.quote`), so a huge string or a YAML alias bomb gives a short message.

YAML format (unknown keys, duplicate names, a phrase claimed by two classes and empty classes are errors)::

    name: car_parts                 # optional, free text
    defaults:                       # optional; override the predictor's thresholds for every class
      box_threshold: 0.30
      text_threshold: 0.25
    classes:
      - name: wheel                 # class name, unique
        phrases: [wheel, tire]      # synonyms; default [name]
        box_threshold: 0.35         # optional per-class override
        text_threshold: 0.25        # optional per-class override
        clip_templates: ["a photo of a {}."]   # optional, for CLIP checks
      - car                         # shorthand: a bare class name

Thresholds set here are the same options as the predictor's ``box_threshold`` / ``text_threshold`` and their
per-class forms, under the same rule: a backend that refuses an option (its ``refused_options``; OWLv2,
OmDet-Turbo and SAM 3 refuse ``text_threshold``) refuses an ontology that moves it away from its default,
naming the class (:meth:`Ontology.threshold_changes`, checked by ``Predictor.check_options``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grounded.errors import InputError, quote

_CLASS_KEYS = {"name", "phrases", "box_threshold", "text_threshold", "clip_templates"}
_TOP_KEYS = {"name", "defaults", "classes"}
_DEFAULT_KEYS = {"box_threshold", "text_threshold"}
_THRESHOLD_OPTIONS = {"box_threshold": "box", "class_box_thresholds": "box",  # SegmentOptions field -> threshold
                      "text_threshold": "text", "class_text_thresholds": "text"}
_CAPTION_SEPARATOR = re.compile(r"\s+\.(?:\s+|$)")  # " . " between phrases, or " ." ending the caption


def split_caption(text: str) -> list[str]:
    """Phrases of a Grounding-DINO caption: ``"2.5 ton truck . car ."`` -> ``["2.5 ton truck", "car"]``.

    Only a dot with white space before it and after it (or at the end) separates; a trailing dot right after
    the last word (``"car . wheel."``) ends the caption too. Phrases are stripped; empty ones are dropped.
    """
    parts = _CAPTION_SEPARATOR.split(" " + text.strip())  # the leading space lets a caption start with " . "
    parts = [p.strip() for p in parts]
    if parts and parts[-1].endswith("."):
        parts[-1] = parts[-1][:-1].strip()
    return [p for p in parts if p]


def normalize_phrase(text: str) -> str:
    """Lower-case, collapse white space, strip a trailing period (Grounding DINO's separator)."""
    text = " ".join(str(text).split()).lower()
    return text.rstrip(" .").strip()


def _check_threshold(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise InputError(f"{where}: threshold must be a number in [0, 1], got {quote(value)}")
    return float(value)


@dataclass(frozen=True)
class OntologyClass:
    """One class: its name, the phrases that mean it, optional thresholds and CLIP templates."""

    name: str
    phrases: tuple[str, ...]
    box_threshold: float | None = None  # None: use the predictor's / ontology's default
    text_threshold: float | None = None
    clip_templates: tuple[str, ...] = ()  # e.g. ("a photo of a {}.",); empty: CLIP uses the phrases as is


@dataclass(frozen=True)
class Ontology:
    """An ordered set of classes; class id = position in ``classes``."""

    classes: tuple[OntologyClass, ...]
    name: str = ""
    box_threshold: float | None = None  # ontology-wide defaults (None: the predictor's)
    text_threshold: float | None = None
    _phrase_to_class: dict[str, int] = field(default=None, init=False, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if not self.classes:
            raise InputError("ontology has no classes: give at least one class name or phrase")
        seen_names: set[str] = set()
        mapping: dict[str, int] = {}
        for class_id, cls in enumerate(self.classes):
            if not cls.name.strip():
                raise InputError(f"ontology class #{class_id} has an empty name")
            if cls.name in seen_names:
                raise InputError(f"ontology: duplicate class name {quote(cls.name)}; merge them into one class")
            seen_names.add(cls.name)
            if not cls.phrases:
                raise InputError(f"ontology class {quote(cls.name)} has no phrases: give at least one")
            for phrase in cls.phrases:
                key = normalize_phrase(phrase)
                if not key:
                    raise InputError(f"ontology class {quote(cls.name)} has an empty phrase")
                owner = mapping.get(key)
                if owner is not None and owner != class_id:
                    raise InputError(
                        f"ontology: phrase {quote(phrase)} is claimed by classes {quote(self.classes[owner].name)} "
                        f"and {quote(cls.name)}; a phrase may mean only one class"
                    )
                mapping[key] = class_id
        object.__setattr__(self, "_phrase_to_class", mapping)

    # ----------------------------------------------------------------------------------------- queries
    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    def __len__(self) -> int:
        return len(self.classes)

    def phrases(self) -> list[tuple[str, int]]:
        """Every (normalised phrase, class id), in ontology order, without repeats."""
        return list(self._phrase_to_class.items())

    def class_id(self, phrase: str) -> int:
        """Class id of an exact phrase (after normalisation); KeyError if the phrase is not in the ontology."""
        return self._phrase_to_class[normalize_phrase(phrase)]

    def box_threshold_for(self, class_id: int, default: float) -> float:
        own = self.classes[class_id].box_threshold
        return own if own is not None else (self.box_threshold if self.box_threshold is not None else default)

    def text_threshold_for(self, class_id: int, default: float) -> float:
        own = self.classes[class_id].text_threshold
        return own if own is not None else (self.text_threshold if self.text_threshold is not None else default)

    def threshold_changes(self, option: str, defaults: Any) -> list[str]:
        """Where this ontology moves a threshold option away from its default (empty: nowhere).

        ``option`` is a :class:`grounded.config.SegmentOptions` field: ``"box_threshold"`` /
        ``"class_box_thresholds"`` (both: the box threshold) or the text forms; any other option -> [] (an
        ontology sets thresholds only). ``defaults``: options holding the default thresholds
        (``SegmentOptions()``). Each class whose own value differs is named, and the ontology's ``defaults``
        when they differ and some class takes them, e.g. ``["class 'wheel' sets text_threshold 0.3",
        "defaults set text_threshold 0.2"]``. The pipeline refuses these as it refuses the same options given
        as keywords, for a backend that cannot honour them.
        """
        kind = _THRESHOLD_OPTIONS.get(option)
        if kind is None:
            return []
        key = f"{kind}_threshold"
        default = getattr(defaults, key)
        changes = [f"class {quote(c.name)} sets {key} {getattr(c, key):g}" for c in self.classes
                   if getattr(c, key) is not None and getattr(c, key) != default]
        shared = getattr(self, key)
        if shared is not None and shared != default and any(getattr(c, key) is None for c in self.classes):
            changes.append(f"defaults set {key} {shared:g}")
        return changes

    # ------------------------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        defaults = {k: v for k, v in (("box_threshold", self.box_threshold), ("text_threshold", self.text_threshold)) if v is not None}
        if defaults:
            out["defaults"] = defaults
        classes = []
        for c in self.classes:
            entry: dict[str, Any] = {"name": c.name, "phrases": list(c.phrases)}
            if c.box_threshold is not None:
                entry["box_threshold"] = c.box_threshold
            if c.text_threshold is not None:
                entry["text_threshold"] = c.text_threshold
            if c.clip_templates:
                entry["clip_templates"] = list(c.clip_templates)
            classes.append(entry)
        out["classes"] = classes
        return out

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON form: equal for equal ontologies, whatever file they came from."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    # ---------------------------------------------------------------------------------------- builders
    @classmethod
    def from_dict(cls, data: Any, source: str = "ontology") -> Ontology:
        if not isinstance(data, dict):
            raise InputError(f"{source}: expected a mapping with a 'classes' list, got {type(data).__name__}")
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise InputError(f"{source}: unknown key(s) {quote(sorted(map(str, unknown)))}; allowed: {sorted(_TOP_KEYS)}")
        defaults = data.get("defaults") or {}
        if not isinstance(defaults, dict) or set(defaults) - _DEFAULT_KEYS:
            raise InputError(f"{source}: 'defaults' may hold only {sorted(_DEFAULT_KEYS)}, got {quote(defaults)}")
        raw_classes = data.get("classes")
        if not isinstance(raw_classes, list) or not raw_classes:
            raise InputError(f"{source}: 'classes' must be a non-empty list of class names or mappings")
        classes = []
        for i, entry in enumerate(raw_classes):
            where = f"{source}: classes[{i}]"
            if isinstance(entry, str):
                entry = {"name": entry}
            if not isinstance(entry, dict):
                raise InputError(f"{where}: expected a class name or a mapping, got {quote(entry)}")
            unknown = set(entry) - _CLASS_KEYS
            if unknown:
                raise InputError(f"{where}: unknown key(s) {quote(sorted(map(str, unknown)))}; allowed: {sorted(_CLASS_KEYS)}")
            name = entry.get("name")
            if not isinstance(name, str) or not name.strip():
                raise InputError(f"{where}: 'name' must be a non-empty string")
            phrases = entry.get("phrases", [name])
            if isinstance(phrases, str):
                phrases = [phrases]
            if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
                raise InputError(f"{where} ({quote(name)}): 'phrases' must be a list of strings")
            if not phrases:
                raise InputError(f"{where} ({quote(name)}): 'phrases' is empty; give at least one phrase")
            templates = entry.get("clip_templates", [])
            if not isinstance(templates, list) or not all(isinstance(t, str) and "{}" in t for t in templates):
                raise InputError(f"{where} ({quote(name)}): 'clip_templates' must be strings containing '{{}}'")
            classes.append(
                OntologyClass(
                    name=name.strip(),
                    phrases=tuple(p.strip() for p in phrases),
                    box_threshold=_check_threshold(entry.get("box_threshold"), where),
                    text_threshold=_check_threshold(entry.get("text_threshold"), where),
                    clip_templates=tuple(templates),
                )
            )
        name = data.get("name", "")
        if not isinstance(name, (str, int, float)):
            raise InputError(f"{source}: 'name' must be text, got {quote(name)}")
        return cls(
            classes=tuple(classes),
            name=str(name),
            box_threshold=_check_threshold(defaults.get("box_threshold"), f"{source}: defaults"),
            text_threshold=_check_threshold(defaults.get("text_threshold"), f"{source}: defaults"),
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> Ontology:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise InputError(f"ontology file {str(path)!r} not found; see prompts/ for examples")
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"ontology file {str(path)!r} is not UTF-8 text (byte {exc.start}: {quote(raw[exc.start : exc.start + 8])}); "
                "save it as UTF-8"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"ontology file {str(path)!r} is not valid YAML: {quote(str(exc))[1:-1]}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_classes(cls, names: str | Iterable[str]) -> Ontology:
        """One class per name; ``names`` is a list or a comma-separated string (``"car, wheel"``)."""
        if isinstance(names, str):
            names = names.split(",")
        cleaned = [" ".join(n.split()) for n in names]
        cleaned = [n for n in cleaned if n]
        if not cleaned:
            raise InputError("no class names given: pass e.g. --classes \"car, wheel\"")
        return cls(classes=tuple(OntologyClass(name=n, phrases=(n,)) for n in cleaned))

    @classmethod
    def from_prompt(cls, prompt: str | Sequence[str] | Ontology) -> Ontology:
        """Coerce any accepted prompt form (see the module docstring) into an ontology."""
        if isinstance(prompt, Ontology):
            return prompt
        if isinstance(prompt, str):
            text = prompt.strip()
            if not text:
                raise InputError("empty prompt: give a phrase such as \"a wheel\" or a caption \"car . wheel .\"")
            if _CAPTION_SEPARATOR.search(text):  # a Grounding-DINO caption: phrases separated by " . "
                parts = [p for p in (normalize_phrase(p) for p in split_caption(text)) if p]
                if parts:
                    return cls.from_classes(parts)
            return cls.from_classes([text.rstrip(".").strip() or text])
        if isinstance(prompt, (list, tuple)):
            if not all(isinstance(p, str) for p in prompt):
                raise InputError(f"prompt list must hold strings, got {quote([type(p).__name__ for p in prompt])}")
            return cls.from_classes(list(prompt))
        raise InputError(f"prompt must be a string, a list of strings or an Ontology, got {type(prompt).__name__}")
