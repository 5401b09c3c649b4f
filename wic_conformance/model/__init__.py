"""model layer (see ARCHITECTURE.md)."""
