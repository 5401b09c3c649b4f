"""Import every built-in check module so that each registers into :data:`registry.REGISTRY`."""

from __future__ import annotations

from wic_conformance.validate import (  # noqa: F401  (imported for registration)
    conversion,
    iod,
    json_model,
    stow_request,
    stow_response,
    wic_content,
    xml_model,
)
from wic_conformance.validate.registry import REGISTRY

__all__ = ["REGISTRY"]
