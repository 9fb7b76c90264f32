"""Behind nginx or an ingress: the client address the log records."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.conftest import BOSTON_ROW


@pytest.mark.parametrize(("hops", "forwarded_for", "logged"), [
    (0, "203.0.113.7", "127.0.0.1"),               # no proxy trusted: the header is a client's claim
    (1, "203.0.113.7", "203.0.113.7"),             # nginx set it to the address it saw
    (1, "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # only the nearest proxy's entry is believed
])
def test_the_logged_client_address_trusts_only_the_configured_proxies(settings, make_app, hops, forwarded_for,
                                                                       logged):
    from flask_app.extensions import db

    app = make_app(dict(settings, TRUSTED_PROXY_HOPS=hops))
    with app.app_context():
        db.session.execute(sa.text("TRUNCATE prediction_log"))
        db.session.commit()
    response = app.test_client().post("/predict", json={"instances": [BOSTON_ROW]},
                                      headers={"X-Forwarded-For": forwarded_for})
    assert response.status_code == 200
    assert app.extensions["prediction_log"].flush().error is None
    with app.app_context():
        assert db.session.scalar(sa.text("SELECT client_addr FROM prediction_log")) == logged
        db.session.remove()
