"""The SQLite cache and the records it stores."""
