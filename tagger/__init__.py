"""genretag: tag a music library with genres by listening to it.

The core package: walking, decoding, analysis, the backend protocol and
registry, the SQLite cache, tag writing and the command line.  It never
imports the built-in backends directly; they arrive through entry points.
"""

__version__ = "0.1.0"
