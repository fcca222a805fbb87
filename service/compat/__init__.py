"""Private internals of third-party libraries, one module per library.

Each module is the only place its library's private names are used; its unit test
(tests/unit/test_compat_<library>.py) drives them with the installed release, so an upgrade that
breaks one fails there, and pyproject.toml holds the library to the minor version tested.
"""
