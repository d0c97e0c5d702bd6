"""Unit tests run in an environment of their own: no settings from the developer's shell or ./config.yaml.

A unit test that builds settings (directly, or through a command's ``main``) would otherwise read
whatever the machine has - an exported KAFKA_BROKERS, a config.yaml left by ``make run`` - and pass or
fail by the machine, not by the code.
"""

from __future__ import annotations

import pytest

from internal.config.loader import environment_names


@pytest.fixture(autouse=True)
def _no_machine_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in environment_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONFIG_FILE", "")  # set but empty: no file, not even ./config.yaml
