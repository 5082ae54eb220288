"""The shipped configuration files are valid and the reference is complete."""

from __future__ import annotations

import glob
import os

import pytest

from nomadkv.config import OPTIONS, ConfigError, load, reference_toml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    for size in ("\u00b2", "9" * 5000, "1\u00b2mb"):  # isdigit() takes them, int() refuses
        with pytest.raises(ConfigError):
            load(None, {"proto-max-bulk-len": size})
