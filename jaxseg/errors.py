"""Exceptions raised by jaxseg."""


class DataError(ValueError):
    """A file from outside is missing, unreadable or inconsistent.

    The message always names the file and what is wrong with it.
    """
