"""The shipped configuration files are valid and the reference is complete."""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import sys

import pytest

from nomadkv.config import OPTIONS, ConfigError, load, reference_toml
from nomadkv.harness import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_port_in_use_is_a_clear_error_not_a_traceback(tmp_path) -> None:
    with socket.create_server(("127.0.0.1", free_port())) as taken:
        port = taken.getsockname()[1]
        argv = [sys.executable, "-m", "nomadkv.cli", "server", "--port", str(port)]
        argv += ["--http-port", "0", "--dir", str(tmp_path / "d")]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert "nomadkv: cannot start: " in done.stderr and "Traceback" not in done.stderr


def test_reference_file_is_generated_from_the_options_table() -> None:
    with open(os.path.join(ROOT, "conf", "nomadkv.toml")) as f:
        assert f.read() == reference_toml(), "run: nomadkv config-reference > conf/nomadkv.toml"
    config = load(os.path.join(ROOT, "conf", "nomadkv.toml"), {})
    assert all(config.get(o.name) == load(None, {}).get(o.name) for o in OPTIONS)


def test_cluster_example_files_describe_one_consistent_cluster() -> None:
    paths = sorted(glob.glob(os.path.join(ROOT, "conf", "cluster", "node*.toml")))
    configs = [load(path, {}) for path in paths]
    assert len(configs) == 3
    assert {c.node_id for c in configs} == {1, 2, 3}
    assert len({c.peers for c in configs}) == 1 and len({c.cluster_secret for c in configs}) == 1
    for c in configs:
        host, bus_port = c.peer_addresses()[c.node_id]
        assert (host, bus_port) == (c.bind, c.bus_port)


def test_flags_override_the_file_and_bad_values_are_refused(tmp_path) -> None:
    path = tmp_path / "n.toml"
    path.write_text('port = 7000\nappendfsync = "no"\n')
    assert load(str(path), {"port": "7100"}).port == 7100
    assert load(str(path), {}).appendfsync == "no"
    with pytest.raises(ConfigError):
        load(None, {"appendfsync": "sometimes"})
    with pytest.raises(ConfigError):
        load(None, {"node-id": "1"})  # cluster mode needs a secret and peers
    for values in ({"port": 70000}, {"http-port": "65536"}, {"timeout": 1.5}, {"port": 6379.0}):
        with pytest.raises(ConfigError):  # the kernel would wrap the port; TOML floats cut
            load(None, values)
    with pytest.raises(ConfigError, match="bus port"):
        load(None, {"node-id": "1", "cluster-secret": "s", "port": "60000", "peers": "1@a:1"})
    for size in ("\u00b2", "9" * 5000, "1\u00b2mb"):  # isdigit() takes them, int() refuses
        with pytest.raises(ConfigError):
            load(None, {"proto-max-bulk-len": size})
