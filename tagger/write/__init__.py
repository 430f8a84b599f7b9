"""Writing genres into files' tags: proposals, the journal, undo."""
