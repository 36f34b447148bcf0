"""The bundled example model repository, generated on first use (no binaries in the package)."""
