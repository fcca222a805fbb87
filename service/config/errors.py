"""The one error configuration raises."""


class SettingsError(ValueError):
    """A variable holds a value the service cannot run with; the message names the variable."""
