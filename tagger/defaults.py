"""Defaults that more than one front door shares (the CLI, the config example, the beets plugin).

Importable without heavy dependencies, so any of them can read it at start-up.
"""

#: The backend a scan uses when none is named: on the 173 GTZAN clips under artist-kfold fusion scored 0.746
#: against musicnn's 0.700, at 0.81 times its files/s (README "Results" and "Speed", docs/fusion.md).
DEFAULT_BACKEND = "fusion"

#: scan --abstain-below: None decides by the model card's rule (tagger/decision.py); 0 never abstains.
DEFAULT_ABSTAIN_BELOW: float | None = None
#: tag --write-above: write a genre only if at least this likely (0: whatever the scan decided).
DEFAULT_WRITE_ABOVE = 0.0
#: tag --write-above with --from-tags.  Tag probabilities are independent sigmoids (a track can be 0.6 rock
#: and 0.5 indie), not shares of one softmax, so 0.3 already says "this tag applies" for most tag models.
DEFAULT_WRITE_ABOVE_FROM_TAGS = 0.3
