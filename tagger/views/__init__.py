"""What the commands print and export: terminal output, tables, CSV/JSON records."""
