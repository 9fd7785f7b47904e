"""Configuration for sluice-dp with external plugins (the plugin-server bridge).

The Go examples are built by `make` into build/bin/go-plugins/. A go-pdk
server listens on <-kong-prefix>/<binary name>.socket, so each one is started
with -kong-prefix set to the data plane's prefix, where sluice-dp looks for
<prefix>/<name>.socket by default.
"""

import os
from pathlib import Path

import pytest

from conftest import BUILD

GO_PLUGINS = BUILD / "bin" / "go-plugins"


def go_binary(name):
    path = GO_PLUGINS / name
    if not path.exists():
        pytest.fail("%s is missing: build the Go examples with `make go-examples`" % path,
                    pytrace=False)
    return path


def server_key(name, what):
    return "pluginserver_%s_%s" % (name.lower().replace("-", "_"), what)


def go_plugin_conf(prefix, names, plugins=None, **per_server):
    """sluice-dp settings that run the Go example servers `names` from the
    data plane's prefix. per_server entries are {what: value} applied to
    every server (timeout="2s", fail_open="on", ...). `plugins` defaults to
    bundled plus the names."""
    prefix = Path(prefix)
    conf = {
        "plugins": plugins or ",".join(["bundled"] + list(names)),
        "pluginserver_names": ",".join(names),
    }
    for n in names:
        exe = go_binary(n)
        conf[server_key(n, "query_cmd")] = "%s -dump" % exe
        conf[server_key(n, "start_cmd")] = "%s -kong-prefix %s" % (exe, prefix)
        conf[server_key(n, "socket")] = str(prefix / ("%s.socket" % n))
        for what, value in per_server.items():
            conf[server_key(n, what)] = value
    return conf


def server_pids(dp_pid, marker):
    """Processes whose parent is the data plane (the plugin servers it
    started) and whose command line contains marker (bytes)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if ppid == dp_pid and marker in cmd:
            pids.append(int(d))
    return pids
