"""Errors of the grouping engine."""


class SchemeError(ValueError):
    """A scheme folder is missing a file or holds invalid data.

    The message names the file and the entry, e.g.
    ``adrg.json: ADRG FB1 rule: unknown list id 'FB1.pxx'``.
    """


class RegistryError(LookupError):
    """No scheme is in force for a region and date, or registry entries conflict."""
