"""One module per paper section (one per notebook): its parameters, run grid and claims."""
