"""pgml_ext: score TensorFlow models inside PostgreSQL.

Client side (this package): :func:`install`, :func:`register_model`, the SQLAlchemy
functions in :mod:`pgml_ext.sqlalchemy`, the ``pgml-ext`` CLI and the embedded cluster.
Server side: :mod:`pgml_ext.indb`, imported by the extension's PL/Python functions.
"""

__all__ = ["__version__", "install", "install_async", "install_in_migration", "register_model"]


def __getattr__(name: str):
    # Lazy: `import pgml_ext.indb` runs in every new backend's first scoring call, and
    # must not pay for importlib.metadata (~45 ms) or pull in SQLAlchemy.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("pgml_ext")
        except PackageNotFoundError:  # a checkout that was never installed
            return "0+unknown"
    if name in ("install", "install_async", "install_in_migration", "register_model"):
        from pgml_ext import client

        return getattr(client, name)
    raise AttributeError(name)
