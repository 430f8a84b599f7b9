"""Where genretag keeps its database and models (the user's data directory) and its config file.

``GENRETAG_HOME`` overrides everything (tests and portable installs use it:
the config file then sits beside the database); otherwise the platform's
convention is followed, so each file is where a user of that platform
would look for application data and settings.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP = "genretag"


def _app_dir(windows: tuple[str, str], unix: tuple[str, str]) -> Path:
    """GENRETAG_HOME, else the platform's folder: (env var, fallback under home) on Windows and Linux."""
    override = os.environ.get("GENRETAG_HOME")
    if override:
        return Path(override).expanduser()
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / APP
    var, fallback = windows if sys.platform == "win32" else unix
    return Path(os.environ.get(var) or home / fallback) / APP


def data_dir() -> Path:
    """Return the directory for the default database and trained models."""
    return _app_dir(("LOCALAPPDATA", "AppData/Local"), ("XDG_DATA_HOME", ".local/share"))


def config_dir() -> Path:
    """The directory of ``config.toml``: XDG_CONFIG_HOME, ~/Library/Application Support or %APPDATA%."""
    return _app_dir(("APPDATA", "AppData/Roaming"), ("XDG_CONFIG_HOME", ".config"))


def default_config_path() -> Path:
    """The config file read when neither ``--config`` nor ``GENRETAG_CONFIG`` names one."""
    return config_dir() / "config.toml"


def default_db_path() -> Path:
    """The SQLite cache used when ``--db`` is not given."""
    return data_dir() / "genretag.db"


def models_dir() -> Path:
    """Trained models written by ``genretag train`` live here, one folder per backend."""
    return data_dir() / "models"
