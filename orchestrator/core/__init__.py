"""The pure core: placement, planning and status, functions over plain data (no I/O)."""
