"""The bottom layer: where files live (paths), shared argument checks (checks), atomic file writes (files)."""
