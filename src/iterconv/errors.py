"""The project's error types, in a leaf module that the library and the command line share
(it imports nothing of the project)."""


class UserError(Exception):
    """An error caused by input (paths, parameters, files): reported as one line."""


class ParamsError(ValueError):
    """An invalid params.yaml: the message names the key and what is allowed."""
