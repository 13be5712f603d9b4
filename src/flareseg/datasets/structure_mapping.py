"""Structure names to flareseg classes, and the ``dataset.json`` labels they are written as.

Names become classes by :func:`flareseg.labels.class_for_name`, or by explicit :class:`MapRule` s
(``--map NAME=CLASS[+CLASS...]``); several classes make a merged label with a value of its own
above the FLARE ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from flareseg.datasets.label_mapping import MAX_VALUE
from flareseg.errors import InputError
from flareseg.labels import BY_NAME, LESION, class_for_name, normalise_name

#: ``--map NAME=ignore`` leaves a structure out.
IGNORE = "ignore"


@dataclass(frozen=True)
class MapRule:
    """An explicit mapping of one structure name (``--map NAME=CLASS[+CLASS...]``).

    Attributes:
        name: Structure or segment name; compared as :func:`flareseg.labels.normalise_name` does.
        classes: Canonical flareseg class names in FLARE id order; several for a merged label,
            none to leave the structure out.
    """

    name: str
    classes: tuple[str, ...]


@dataclass(frozen=True)
class StructureInfo:
    """One ROI or segment of the file, before it is read.

    Attributes:
        number: ROI number (RTSTRUCT) or segment number (SEG).
        names: The name shown (ROI name or segment label) first, then other names to match
            (the segmented property type of a segment).
    """

    number: int
    names: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.names[0]


@dataclass(frozen=True)
class DatasetLabel:
    """A name and value of ``dataset.json`` ``labels`` and the flareseg classes it stands for."""

    name: str
    value: int
    classes: tuple[str, ...]

    def describe(self) -> str:
        """``"11 stomach"`` or ``"15 Stomach_duo = stomach+duodenum"``."""
        merged = f" = {'+'.join(self.classes)}" if len(self.classes) > 1 else ""
        return f"{self.value} {self.name}{merged}"


def parse_map_rule(text: str) -> MapRule:
    """Parse ``NAME=CLASS``, ``NAME=CLASS+CLASS...`` or ``NAME=ignore``.

    CLASS is a flareseg class name or alias (:data:`flareseg.labels.ALIASES`), any case.

    Raises:
        InputError: No ``=``, an empty side, or a CLASS that is not a flareseg class.
    """
    name, equals, target = text.rpartition("=")
    if not equals or not name.strip() or not target.strip():
        raise InputError(f"{text!r}: expected NAME=CLASS, NAME=CLASS+CLASS or NAME={IGNORE}")
    if normalise_name(target) == IGNORE:
        return MapRule(name.strip(), ())
    labels = set()
    for part in target.split("+"):
        label = class_for_name(part)
        if label is None:
            raise InputError(f"{text!r}: {part.strip()!r} is not a flareseg class "
                             f"(one of {', '.join(BY_NAME)}, or {IGNORE})")
        labels.add(label)
    return MapRule(name.strip(), tuple(label.name for label in sorted(labels, key=lambda label: label.id)))


def resolve_targets(structures: Sequence[StructureInfo],
                    rules: Sequence[MapRule] = ()) -> list[tuple[str, ...] | None]:
    """The flareseg classes each structure stands for.

    A rule naming any of a structure's names wins; otherwise the first of its names that is a
    flareseg class name or alias.

    Returns:
        Per structure, in order: canonical class names (several for a merged label), ``()``
        when a rule ignores it, or None when nothing matches.

    Raises:
        InputError: Two structures stand for the same class(es), or a rule names no structure
            (a misspelt ``--map`` would otherwise do nothing).
    """
    by_rule = {normalise_name(rule.name): rule.classes for rule in rules}
    names = {normalise_name(n) for structure in structures for n in structure.names}
    unused = [rule.name for rule in rules if normalise_name(rule.name) not in names]
    if unused:
        listed = ", ".join(repr(s.name) for s in structures) or "none"
        raise InputError(f"--map names {unused[0]!r}, which is no structure of the file (structures: {listed})")
    targets: list[tuple[str, ...] | None] = []
    for structure in structures:
        ruled = [by_rule[normalise_name(n)] for n in structure.names if normalise_name(n) in by_rule]
        found = [label for label in map(class_for_name, structure.names) if label is not None]
        targets.append(ruled[0] if ruled else (found[0].name,) if found else None)
    seen: dict[tuple[str, ...], str] = {}
    for structure, classes in zip(structures, targets):
        if classes and classes in seen:
            raise InputError(f"structures {seen[classes]!r} and {structure.name!r} both map to "
                             f"{'+'.join(classes)}; leave one out with --map \"{structure.name}={IGNORE}\"")
        if classes:
            seen[classes] = structure.name
    return targets


def plan_labels(structures: Sequence[StructureInfo], targets: Sequence[tuple[str, ...] | None],
                dataset_json: dict) -> dict[tuple[str, ...], DatasetLabel]:
    """The ``labels`` name and value each kept structure is written with.

    A label of ``dataset_json`` that stands for the same classes (``"Liver": 1``, AMOS's
    ``"liver": 6``, a merged label of the same classes) is reused. Otherwise a plain class gets
    its flareseg name and its FLARE id (or, when another name holds that value, the next value
    above every value in use), and a merged label the structure's name and that next value.

    Returns:
        Classes -> dataset label, for every structure with classes.

    Raises:
        InputError: A clash with ``dataset_json``: the name is there with another value or
            meaning, or the value belongs to another name; or no value is left below 256.
    """
    labels = dict(dataset_json["labels"])
    mapping = dict(dataset_json.get("label_mapping") or {})
    plan: dict[tuple[str, ...], DatasetLabel] = {}
    for structure, classes in zip(structures, targets):
        if not classes:
            continue
        following = max([*labels.values(), LESION]) + 1
        label = _existing_label(labels, mapping, classes)
        if label is None and len(classes) == 1:
            value = BY_NAME[classes[0]].id
            label = DatasetLabel(classes[0], following if value in labels.values() else value, classes)
        elif label is None:
            label = DatasetLabel(structure.name, following, classes)
        _check_no_clash(label, labels, mapping)
        labels[label.name] = label.value
        if len(classes) > 1:
            mapping[label.name] = list(classes)
        plan[classes] = label
    return plan


def _meaning(name: str, mapping: dict) -> tuple[str, ...] | None:
    """Canonical classes a ``labels`` name of a dataset stands for (``()`` ignored, None unknown)."""
    target = mapping[name] if name in mapping else name
    if target is None:
        return ()
    targets = target if isinstance(target, list) else [target]
    labels = [class_for_name(t) for t in targets if isinstance(t, str)]
    if len(labels) != len(targets) or None in labels:
        return None
    return tuple(label.name for label in sorted(set(labels), key=lambda label: label.id))


def _existing_label(labels: dict[str, int], mapping: dict, classes: tuple[str, ...]) -> DatasetLabel | None:
    """The label of a dataset that stands for exactly ``classes``, if any."""
    for name, value in labels.items():
        if value and _meaning(name, mapping) == classes:
            return DatasetLabel(name, value, classes)
    return None


def _check_no_clash(label: DatasetLabel, labels: dict[str, int], mapping: dict) -> None:
    if label.value > MAX_VALUE:
        raise InputError(f"dataset.json: no label value left for {label.name!r} (values must lie in 0..{MAX_VALUE})")
    if label.name in labels and _meaning(label.name, mapping) != label.classes:
        raise InputError(f"dataset.json: label {label.name!r} means something else there than "
                         f"{'+'.join(label.classes)}")
    if label.name in labels and labels[label.name] != label.value:
        raise InputError(f"dataset.json: label {label.name!r} has value {labels[label.name]} there, "
                         f"this import writes it as {label.value}")
    others = [name for name, value in labels.items() if value == label.value and name != label.name]
    if others:
        raise InputError(f"dataset.json: value {label.value} belongs to label {others[0]!r}, "
                         f"this import writes {label.name!r} with it")
