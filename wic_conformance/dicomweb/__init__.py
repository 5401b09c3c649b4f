"""Pure DICOMweb protocol layer: bytes and headers in, typed values out (no sockets, no pytest)."""
