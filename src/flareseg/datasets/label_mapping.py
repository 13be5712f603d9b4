"""What a dataset's voxel values mean: FLARE class ids found by the names in ``dataset.json``.

nnU-Net's ``dataset.json`` maps names to voxel values (``"labels": {"spleen": 1, ...}``), so
the names, not the values, say which organ a voxel is. Each name is matched to a FLARE class
by :func:`flareseg.labels.class_for_name` (its name or a usual alias). The optional flareseg
key ``label_mapping`` settles the other names: ``{"bladder": null, "hepar": "liver"}`` ignores
``bladder`` (its voxels become background 0) and reads ``hepar`` as the liver. A list of two
or more classes declares a *merged* label, one value meaning "one of these classes", as a
clinical contour of stomach and duodenum together: ``{"Stomach_duo": ["stomach", "duodenum"]}``.

Label maps are translated with a 256-entry lookup table (dataset value -> FLARE id). A merged
label becomes a code of its own, :data:`MERGED_BASE` + its index, which training reads as
"one of its members" (:mod:`flareseg.training.losses`) and scoring leaves out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flareseg.errors import InputError
from flareseg.labels import BACKGROUND, class_for_name, label_name, nnunet_labels

#: Lookup-table entry of values not declared in ``labels`` (never a FLARE id).
UNDECLARED = 255
MAX_VALUE = 255
#: Translated code of the first merged label; the k-th is ``MERGED_BASE + k`` (never a FLARE id).
MERGED_BASE = 200


@dataclass(frozen=True)
class MappedLabel:
    """One foreground name of ``dataset.json`` and the FLARE class it stands for.

    Attributes:
        name: The name as written in ``labels``.
        value: Its voxel value in the dataset's label maps.
        class_id: The FLARE class id, 0 when the name is ignored (read as background), or
            the merged label's code (``MERGED_BASE + k``).
        members: The FLARE ids a merged label stands for (one of them); empty otherwise.
    """

    name: str
    value: int
    class_id: int
    members: tuple[int, ...] = ()

    def describe(self) -> str:
        """``"spleen=1 -> 3 spleen"``, ``"bladder=14 -> ignored (background 0)"``, or
        ``"Stomach_duo=1 -> one of 11 stomach, 12 duodenum"``."""
        if self.members:
            target = "one of " + ", ".join(f"{i} {label_name(i)}" for i in self.members)
        else:
            target = f"{self.class_id} {label_name(self.class_id)}" if self.class_id else "ignored (background 0)"
        return f"{self.name}={self.value} -> {target}"


@dataclass(frozen=True)
class LabelMapping:
    """The translation of a dataset's label values to FLARE class ids.

    Attributes:
        entries: Every foreground name of ``labels``, by ascending value.
        lookup: uint8 ``[256]``: dataset value -> FLARE id (a merged label's code for a merged
            label); 0 for background and ignored names, :data:`UNDECLARED` for values not in
            ``labels``. Read-only.
    """

    entries: tuple[MappedLabel, ...]
    lookup: np.ndarray = field(compare=False, repr=False)

    @property
    def class_ids(self) -> tuple[int, ...]:
        """FLARE ids the dataset labels, ascending; a merged label's members included."""
        ids = {e.class_id for e in self.entries if e.class_id and not e.members}
        return tuple(sorted(ids.union(*(e.members for e in self.entries))))

    @property
    def merged(self) -> dict[int, tuple[int, ...]]:
        """Translated code of each merged label -> the FLARE ids it stands for."""
        return {e.class_id: e.members for e in self.entries if e.members}

    @property
    def is_identity(self) -> bool:
        """True when the values are FLARE ids ``1..n`` under their own names (nothing to translate)."""
        values = [e.value for e in self.entries]
        return values == list(range(1, len(values) + 1)) and all(e.class_id == e.value for e in self.entries)

    def class_of(self, value: int) -> int:
        """FLARE id of one declared dataset value (0 for background or an ignored name)."""
        return int(self.lookup[value])

    def translate(self, label: np.ndarray) -> np.ndarray:
        """A label map in the dataset's numbering, as FLARE class ids.

        Args:
            label: Label map of any shape (e.g. ``[z, y, x]``), integer or integral float values.

        Returns:
            uint8 array of the same shape: FLARE ids, 0 for background and ignored names. When
            the numbering is FLARE's already, a uint8 input is returned as it is (not copied).

        Raises:
            InputError: The map holds a value that ``labels`` does not declare.
        """
        values = _integer_values(label)
        if self.is_identity:
            top = len(self.entries)
            if values.size and int(values.max()) > top:
                _raise_undeclared(values[values > top])
            return values.astype(np.uint8, copy=False)
        out = self.lookup[values]
        if out.size and int(out.max()) == UNDECLARED:
            _raise_undeclared(values[out == UNDECLARED])
        return out


def build_mapping(labels: dict[str, int], explicit: dict[str, str | None] | None = None,
                  source: str = "dataset.json") -> LabelMapping:
    """Match every name of ``labels`` to a FLARE class.

    Args:
        labels: nnU-Net ``labels``: name -> voxel value, with ``"background": 0``.
        explicit: flareseg ``label_mapping``: dataset name -> FLARE class name (any alias),
            None to ignore the name, or a list of two or more class names (a merged label).
            Names listed here are not matched automatically.
        source: Where the labels come from, to begin error messages.

    Raises:
        InputError: A value lies outside 0..255 or is used twice, a name is neither a FLARE
            class nor in ``explicit``, ``explicit`` is malformed, or two names mean one class.
    """
    explicit = _checked_explicit(labels, explicit or {}, source)
    _check_values(labels, source)
    entries, unknown = [], []
    for name, value in sorted(labels.items(), key=lambda item: item[1]):
        if value == BACKGROUND:
            continue
        if isinstance(explicit.get(name), list):
            members = tuple(sorted({class_for_name(target).id for target in explicit[name]}))
            code = MERGED_BASE + sum(1 for e in entries if e.members)
            if code >= UNDECLARED:
                raise InputError(f"{source}: at most {UNDECLARED - MERGED_BASE} merged labels, got more")
            entries.append(MappedLabel(name, value, code, members))
            continue
        class_id = _class_id(name, explicit)
        if class_id is None:
            unknown.append(name)
        else:
            entries.append(MappedLabel(name, value, class_id))
    if unknown:
        names = ", ".join(f"{name!r} (value {labels[name]})" for name in unknown)
        raise InputError(f"{source}: label(s) {names} not a flareseg class; map or ignore in \"label_mapping\", "
                         f"e.g. {{\"{unknown[0]}\": \"liver\"}} or {{\"{unknown[0]}\": null}}")
    _check_one_name_per_class(entries, source)
    return LabelMapping(tuple(entries), _lookup(entries))


def flare_mapping() -> LabelMapping:
    """The mapping of a dataset in FLARE numbering (``flareseg.labels.nnunet_labels()``)."""
    return build_mapping(nnunet_labels())


def _class_id(name: str, explicit: dict[str, str | None]) -> int | None:
    if name in explicit:
        target = explicit[name]
        return BACKGROUND if target is None else class_for_name(target).id
    label = class_for_name(name)
    return label.id if label else None


def _checked_explicit(labels: dict[str, int], explicit, source: str) -> dict[str, str | None]:
    if not isinstance(explicit, dict):
        raise InputError(f"{source}: 'label_mapping' must map label names to flareseg class names or null")
    for name, target in explicit.items():
        if name not in labels or labels[name] == BACKGROUND:
            raise InputError(f"{source}: label_mapping names {name!r}, which is not a foreground name in 'labels'")
        if isinstance(target, list):
            _check_merged(name, target, source)
        elif target is not None and (not isinstance(target, str) or class_for_name(target) is None):
            raise InputError(f"{source}: label_mapping maps {name!r} to {target!r}, which is not a flareseg class")
    return explicit


def _check_merged(name: str, targets: list, source: str) -> None:
    """A merged label names two or more distinct flareseg classes."""
    bad = [t for t in targets if not isinstance(t, str) or class_for_name(t) is None]
    if bad:
        raise InputError(f"{source}: label_mapping maps {name!r} to {bad[0]!r}, which is not a flareseg class")
    if len({class_for_name(t).id for t in targets}) < 2:
        raise InputError(f"{source}: label_mapping maps {name!r} to {targets!r}: a merged label names two or more "
                         f"different classes (use a plain class name for one)")


def _check_values(labels: dict[str, int], source: str) -> None:
    outside = sorted(v for v in labels.values() if not 0 <= v <= MAX_VALUE)
    if outside:
        raise InputError(f"{source}: label values must lie in 0..{MAX_VALUE}, got {outside}")
    values = list(labels.values())
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise InputError(f"{source}: label value(s) {repeated} given to more than one name in 'labels'")


def _check_one_name_per_class(entries: list[MappedLabel], source: str) -> None:
    seen: dict[int, MappedLabel] = {}
    sets: dict[tuple[int, ...], MappedLabel] = {}
    for entry in (e for e in entries if e.members):
        first = sets.setdefault(entry.members, entry)
        if first is not entry:
            raise InputError(f"{source}: labels {first.name!r} (value {first.value}) and {entry.name!r} (value "
                             f"{entry.value}) both mean one of {list(entry.members)}")
    for entry in (e for e in entries if e.class_id and not e.members):
        first = seen.get(entry.class_id)
        if first:
            raise InputError(f"{source}: labels {first.name!r} (value {first.value}) and {entry.name!r} (value "
                             f"{entry.value}) both mean flareseg class {entry.class_id} {label_name(entry.class_id)}")
        seen[entry.class_id] = entry


def _lookup(entries: list[MappedLabel]) -> np.ndarray:
    lookup = np.full(MAX_VALUE + 1, UNDECLARED, np.uint8)
    lookup[BACKGROUND] = 0
    for entry in entries:
        lookup[entry.value] = entry.class_id
    lookup.flags.writeable = False
    return lookup


def _integer_values(label: np.ndarray) -> np.ndarray:
    """``label`` as integers in 0..255 (floats rounded to the nearest integer).

    Raises:
        InputError: A value lies outside 0..255.
    """
    values = np.asarray(label)
    if values.dtype == np.uint8:
        return values
    if not np.issubdtype(values.dtype, np.integer):
        values = np.rint(values)
    if values.size and (values.min() < 0 or values.max() > MAX_VALUE):
        raise InputError(f"label values outside 0..{MAX_VALUE} (range {values.min():g}..{values.max():g})")
    return values.astype(np.uint8)


def _raise_undeclared(values: np.ndarray) -> None:
    raise InputError(f"label value(s) {np.unique(values).tolist()} not declared in dataset.json labels")
