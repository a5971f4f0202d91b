"""[cab] as the daemon and check-config read it (agent/config.py, agent/check_config.py)."""

from __future__ import annotations

import pytest

from agent.check_config import check
from agent.config import CAB_PORT, ConfigError, parse_config

BASE = {"vehicle": {"id": "v1", "token": "t"}, "server": {"host": "gw", "ca_file": "ca.pem"}}


def test_off_by_default_and_on_one_address():
    assert not parse_config(BASE).cab.enabled
    cab = parse_config(BASE | {"cab": {"enabled": True, "listen": "10.42.0.1",
                                       "names": ["cab.local"]}}).cab
    assert (cab.listen, cab.port, cab.names) == ("10.42.0.1", CAB_PORT, ("cab.local",))


@pytest.mark.parametrize("cab, says", [
    ({"enabled": True}, "'listen' must be the IP address"),
    ({"enabled": True, "listen": "0.0.0.0"}, "not 0.0.0.0"),
    ({"enabled": True, "listen": "::"}, "not ::"),
    ({"enabled": True, "listen": "wlan0"}, "'listen' must be the IP address"),
    ({"enabled": "yes", "listen": "10.42.0.1"}, "'enabled' must be true or false"),
    ({"enabled": True, "listen": "10.42.0.1", "port": 70000}, "'port'"),
    ({"enabled": True, "listen": "10.42.0.1", "names": ["x"] * 9}, "'names'"),
    ({"enabled": True, "listen": "10.42.0.1", "cert": "x"}, "unknown key 'cert'"),
])
def test_refused_with_the_reason(cab, says):
    with pytest.raises(ConfigError, match=says):
        parse_config(BASE | {"cab": cab})


def test_check_config_names_the_line(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('[vehicle]\nid = "v1"\ntoken = "t"\n[server]\nhost = "gw"\n'
                    'ca_file = "ca.pem"\n[gps]\ndevice = "/dev/null"\n'
                    '[cab]\nenabled = true\nlisten = "0.0.0.0"\n')
    [problem] = check(str(path))
    assert problem.startswith(f"{path}:11:") and "0.0.0.0" in problem
