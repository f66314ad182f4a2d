"""A short soak (the long one is `make soak`): sessions score while versions come and go."""

import pytest

from pgml_ext import soak

pytestmark = pytest.mark.usefixtures("models", "inputs")


def test_short_soak(db_url, mlp_dir):
    report = soak.run(db_url, mlp_dir, sessions=4, seconds=15)
    print(report.text())
    assert report.statements > 20
    assert report.registered >= 2 and report.deleted >= 1
    assert report.mixed_statements == 0
    assert not report.errors, report.errors
    assert not report.server_restarted
