"""fuzz layer (see ARCHITECTURE.md)."""
