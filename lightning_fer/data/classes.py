"""Expression class sets and the aliases that map data-set folder names onto them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

#: The seven basic expressions in AffectNet's label order (0-6), used by every source so that a
#: class index means the same expression whatever the data set.
BASIC7: tuple[str, ...] = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")
#: AffectNet-8 adds contempt (label 7).
BASIC8: tuple[str, ...] = BASIC7 + ("contempt",)

#: AffectNet's ``expression`` codes 8-10 are not expressions and are never used as labels.
AFFECTNET_NON_EXPRESSIONS: dict[int, str] = {8: "none", 9: "uncertain", 10: "no-face"}

#: Spellings met in FER2013, RAF-DB, CK+, JAFFE, ExpW and friends, mapped to our names.
ALIASES: dict[str, str] = {
    "angry": "anger",
    "anger": "anger",
    "an": "anger",
    "disgust": "disgust",
    "disgusted": "disgust",
    "di": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "afraid": "fear",
    "fe": "fear",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "ha": "happy",
    "neutral": "neutral",
    "neutrality": "neutral",
    "ne": "neutral",
    "sad": "sad",
    "sadness": "sad",
    "sa": "sad",
    "surprise": "surprise",
    "surprised": "surprise",
    "su": "surprise",
    "contempt": "contempt",
    "contemptuous": "contempt",
    "co": "contempt",
}


def canonical_label(name: str) -> str | None:
    """Return our name for an expression spelling, or ``None`` when it is not one.

    Example:
        >>> canonical_label("Angry"), canonical_label("sadness"), canonical_label("cat")
        ('anger', 'sad', None)
    """
    return ALIASES.get(name.strip().lower())


def order_classes(names: Iterable[str]) -> list[str]:
    """Order canonical class names as in :data:`BASIC8`, so indices agree across sources.

    Example:
        >>> order_classes(["sad", "anger", "happy"])
        ['happy', 'sad', 'anger']
    """
    names = set(names)
    unknown = names - set(BASIC8)
    if unknown:
        raise ValueError(f"unknown class names {sorted(unknown)}; known: {list(BASIC8)}")
    return [c for c in BASIC8 if c in names]


def resolve_class_names(class_names: Sequence[str] | None) -> list[str] | None:
    """Map user-given class names onto canonical ones, keeping the user's order."""
    if class_names is None:
        return None
    out = []
    for name in class_names:
        canon = canonical_label(name)
        if canon is None:
            raise ValueError(f"class_names: {name!r} is not an expression we know; known: {list(BASIC8)}")
        out.append(canon)
    if len(set(out)) != len(out):
        raise ValueError(f"class_names: duplicates after alias mapping: {list(class_names)} -> {out}")
    return out
