"""Sound to numbers: the GTZAN features and log-mel slices and the array kernels behind them."""
