"""pgml_ext: score TensorFlow models inside PostgreSQL.

Client side (this package): :func:`install`, :func:`register_model`, the SQLAlchemy
functions in :mod:`pgml_ext.sqlalchemy`, the ``pgml-ext`` CLI and the embedded cluster.
Server side: :mod:`pgml_ext.indb`, imported by the extension's PL/Python functions.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pgml_ext")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__", "install", "register_model"]


def __getattr__(name: str):
    # Lazy so that `import pgml_ext.indb` inside the server never pulls in SQLAlchemy.
    if name == "install":
        from pgml_ext.client import install

        return install
    if name == "register_model":
        from pgml_ext.client import register_model

        return register_model
    raise AttributeError(name)
