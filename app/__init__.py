"""simscore: how alike two images look to a person, as a REST service."""

__version__ = "0.1.0"
