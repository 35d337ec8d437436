"""Errors of the grouping engine: `shared.errors` domain errors with stable codes."""

from shared.errors import Invalid, NotFound


class SchemeError(Invalid):
    """A scheme folder is missing a file or holds invalid data (422 `INVALID_SCHEME`).

    The message names the file and the entry, e.g.
    ``adrg.json: ADRG FB1 rule: unknown list id 'FB1.pxx'``.
    """

    default_code = "INVALID_SCHEME"


class ChangeSetError(Invalid):
    """A local scheme's change set is malformed or does not fit its base scheme (422
    `INVALID_CHANGESET`). `details` holds one entry per problem, each naming the field as a
    path such as ``operations[1].into[0].code`` and the operation it belongs to."""

    default_code = "INVALID_CHANGESET"


class RegistryError(NotFound):
    """No scheme is in force for a region and date (404 `NO_SCHEME_IN_FORCE`), or registry
    entries conflict (the raising site gives its own code)."""

    default_code = "NO_SCHEME_IN_FORCE"
