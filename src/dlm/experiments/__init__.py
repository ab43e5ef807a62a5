"""Multi-run studies (docs/experiments.md): the data-constrained crossover, steps vs quality."""
