"""plans layer (see ARCHITECTURE.md)."""
