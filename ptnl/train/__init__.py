"""One run from its config: the method registry, RunConfig, cached features, the training loop, label sources (noisy labels, pseudo-labels), the engine, the run store, sweeps, UPL."""
