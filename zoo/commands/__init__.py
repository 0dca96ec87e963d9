"""The core's own sub-commands (registered through the same hook as a plugin's)."""
