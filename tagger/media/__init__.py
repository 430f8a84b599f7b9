"""The user's audio files: finding them, decoding an excerpt, reading and writing their genre tags."""
