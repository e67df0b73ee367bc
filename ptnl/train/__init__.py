"""One run from its config: the method registry, cached features, the engine, label sources (noisy labels, pseudo-labels), UPL, sweeps."""
