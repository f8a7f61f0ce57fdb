"""custody: secure updates, TUF-protected delivery of artifacts whose supply chain in-toto verifies.

Installed, the packages are ``custody.client``, ``custody.repository``,
``custody.intoto``, ``custody.keys_tooling`` and ``custody.formats``, so an
application with its own ``client`` or ``repository`` package can import
custody beside it. In the source tree they stay top-level folders (the
design's layout); pyproject.toml maps them under this package for a build,
and the symbolic links beside this file do the same for a checkout on
``sys.path`` (the tests, tools such as import-linter that walk the tree).
"""
