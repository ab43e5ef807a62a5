"""Multi-run studies (issue 5): the data-constrained crossover, steps vs quality."""
