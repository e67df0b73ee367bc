"""The bottom layer: where files live (paths), shared argument checks (checks), the run store (store)."""
