#!/usr/bin/env python3
"""py-hello: go-hello's logic with Kong's Python PDK (kong-pdk on PyPI).

During access it reads one request header (host, unless the configuration
names another) and sets x-hello-from-python: "Python says <message> to
<value>" ("to nobody" when the request has no such header: the PDK answers
None). With config.deny set, a request carrying the header x-deny is
answered 403 through kong.response.exit instead, and one carrying x-fail
gets kong.response.error's 503. In the log phase it appends
the request's method, path and response status to config.log_path when set,
one JSON line per request.

Run as a dedicated plugin server (one plugin per process); the plugin name,
and the socket <prefix>/py-hello.sock, come from the name given to
start_dedicated_server:

    py-hello.py -dump                       print the plugin info (JSON)
    py-hello.py -kong-prefix /usr/local/sluice
"""

import json

import kong_pdk.pdk.kong as kong

Schema = (
    {"message": {"type": "string"}},
    {"header": {"type": "string"}},
    {"deny": {"type": "boolean"}},
    {"log_path": {"type": "string"}},
)

version = "0.1.0"
priority = 0


class Plugin(object):
    def __init__(self, config):
        self.config = config

    def access(self, kong: kong.kong):
        if self.config.get("deny"):
            denied, _ = kong.request.get_header("x-deny")
            if denied:
                kong.response.exit(403, {"message": "denied by py-hello"},
                                   {"X-Denied-By": "py-hello"})
                return
            failed, _ = kong.request.get_header("x-fail")
            if failed:
                kong.response.error(503, "py-hello is unavailable")
                return
        name = self.config.get("header") or "host"
        value, err = kong.request.get_header(name)
        if err:
            kong.log.err("py-hello: reading ", name, ": ", err)
            return
        message = self.config.get("message") or "hello"
        who = "nobody" if value is None else value
        kong.response.set_header("x-hello-from-python",
                                 "Python says %s to %s" % (message, who))

    def log(self, kong: kong.kong):
        path = self.config.get("log_path")
        if not path:
            return
        method, _ = kong.request.get_method()
        req_path, _ = kong.request.get_path()
        status, _ = kong.response.get_status()
        with open(path, "a") as f:
            f.write(json.dumps({"method": method, "path": req_path, "status": status}) + "\n")


if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server
    start_dedicated_server("py-hello", Plugin, version, priority, Schema)
