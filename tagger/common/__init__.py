"""What every layer shares: errors, paths, guarded user files, the config file, JSON text, signals, progress."""
