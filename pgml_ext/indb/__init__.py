"""Server-side half of pgml_ext: runs inside a PostgreSQL backend under PL/Python.

Never imports SQLAlchemy. The SQL functions call :mod:`pgml_ext.indb.api`; the rest is
split by job: ``registry`` (model rows via SPI), ``cache`` (per-backend models),
``examples`` (tf.Example decoding without TensorFlow), ``signatures`` (which signature
an input feeds and how), ``archive`` (SavedModel <-> bytes) and ``runtimes``.
"""
