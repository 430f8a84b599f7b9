"""Imported once by the fork server, so every worker starts warm (imports and JIT done)."""

from ..inference.worker import warm_up

warm_up()
