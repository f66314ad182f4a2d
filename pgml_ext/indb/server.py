"""The PL/Python host module ``plpy``, imported where it is used.

It exists only inside a backend (a builtin of PL/Python), so importing it lazily keeps
pgml_ext.indb importable outside the server; unit tests put a fake in sys.modules.
"""


def plpy():
    import plpy as module

    return module
