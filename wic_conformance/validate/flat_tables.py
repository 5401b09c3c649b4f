"""dicom-validator's ``IODValidator`` made cheaper on tables whose modules include no macro.

The bundled tables (:data:`~wic_conformance.validate.iod.BUNDLED`) list every attribute of
a module in place: no ``include`` entry, so nothing in a module's expansion depends on the
data set.  ``IODValidator`` still rebuilds each module's expansion (a deep copy) every time
it looks at the module, and parses every tag string (``"(0028,0010)"``) each time it meets
it; on the simulated Image Manager's request path that was about a third of the IOD gate.
:class:`FlatTablesValidator` keeps both per table, and validates exactly as its base class
does (tests compare the two on the same data sets).

The overridden methods are private to dicom-validator, so the dependency is pinned to the
minor release these were read from (``pyproject.toml``).
"""

from __future__ import annotations

from typing import Any

from dicom_validator.validator.iod_validator import IODValidator
from dicom_validator.validator.validation_result import DicomTag
from pydicom.tag import BaseTag

__all__ = ["FlatTablesValidator", "is_flat"]


def is_flat(modules: dict[str, Any]) -> bool:
    """Return whether no module (nor any sequence item in one) of ``modules`` includes a macro."""

    def flat(node: Any) -> bool:
        if not isinstance(node, dict):
            return True
        return "include" not in node and all(flat(value) for value in node.values())

    return all(flat(module) for module in modules.values())


class _IntTag(BaseTag):
    """A ``BaseTag`` compared and hashed as a plain int (dicom-validator compares its tags with ints only).

    ``BaseTag``'s own operators first try to turn the other side into a tag, which costs
    more than the rest of an attribute's check.
    """

    __slots__ = ()
    __eq__ = int.__eq__
    __ne__ = int.__ne__
    __lt__ = int.__lt__
    __le__ = int.__le__
    __gt__ = int.__gt__
    __ge__ = int.__ge__
    __hash__ = int.__hash__


class FlatTablesValidator(IODValidator):
    """``IODValidator`` with each module's expansion and each tag identifier built once per table.

    Parameters
    ----------
    *args, **kwargs
        As for ``IODValidator``; ``cache`` (keyword, required) is the dict to keep them in,
        one per table, held by the caller for the table's lifetime.  Use only on tables for
        which :func:`is_flat` holds.

    Notes
    -----
    A cached ``DicomTag`` is shared by every validation that meets the same tag at the same
    sequence depth; dicom-validator only reads them (as keys of its error dicts).
    """

    def __init__(self, *args: Any, cache: dict[tuple[Any, ...], Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cache = cache

    def _tag_id(self, tag_id_string: str) -> DicomTag:
        stack = self._dataset_stack
        parents = tuple((d.tag or 0) for d in stack[1:]) if len(stack) > 1 else ()
        key = (tag_id_string, parents)
        found: DicomTag | None = self._cache.get(key)
        if found is None:
            found = super()._tag_id(tag_id_string)
            found.tag = _IntTag(found.tag)
            self._cache[key] = found
        return found

    def _expanded_module_info(self, module_info: dict[str, dict], group_macros: dict[str, dict[str, dict]] | None,
                              expand_items: bool = False) -> dict[str, dict | str]:
        # Without an include, the expansion depends on nothing but its arguments.  The
        # arguments are kept with the entry, so an id is never reused while it is cached.
        key = ("expanded", id(module_info), id(group_macros), expand_items)
        entry = self._cache.get(key)
        if entry is None:
            expanded = super()._expanded_module_info(module_info, group_macros, expand_items)
            entry = self._cache[key] = (expanded, module_info, group_macros)
        result: dict[str, dict | str] = entry[0]
        return result
