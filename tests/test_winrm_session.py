"""The WinRM transport reads the proxy environment once per session, not once per request."""

from __future__ import annotations

import pytest

from cosdoc_certs.windows.connection import ConnectionOptions, default_pool


def test_the_proxy_of_the_environment_is_kept_and_not_looked_up_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.kommune.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    options = ConnectionOptions("cosdoc-app01.kommune.local", username="u@K.LOCAL", password="p")
    session = default_pool(options).connection.transport.session
    assert session is not None
    assert session.proxies["https"] == "http://proxy.kommune.example:3128"
    assert session.trust_env is False


def test_loopback_goes_direct_whatever_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.kommune.example:3128")
    options = ConnectionOptions("127.0.0.1", port=5986, username="lab", password="p")
    session = default_pool(options).connection.transport.session
    assert session is not None
    assert session.proxies == {"https": False}
