"""Defaults that more than one front door shares (the CLI, the config example, the beets plugin).

Importable without heavy dependencies, so any of them can read it at start-up.
"""

#: The backend a scan uses when none is named: on the 173 GTZAN clips under artist-kfold fusion scored 0.746
#: against musicnn's 0.700, at 0.81 times its files/s (README "Results" and "Speed", docs/fusion.md).
DEFAULT_BACKEND = "fusion"
