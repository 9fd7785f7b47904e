#!/usr/bin/env python3
"""Declarative files and wrk scripts for the plugin benchmark (make bench,
section 4): one route to the upstream, 100 consumers each with a key-auth
key and a basic-auth password, and per scenario the plugins named on the
command line. Writes <out>/<scenario>.json and <out>/<scenario>.lua (the
script sends what the plugins need: a rotating API key or Basic
credential, an Origin).

    gen_plugins.py --upstream URL --out DIR
"""
import argparse
import base64
import json
import os

CONSUMERS = 100

SCENARIOS = {
    "none": [],
    "key-auth+rate-limiting": [
        {"name": "key-auth"},
        {"name": "rate-limiting", "config": {"hour": 1000000000, "policy": "local"}}],
    "key-auth": [{"name": "key-auth"}],
    "basic-auth": [{"name": "basic-auth"}],
    "key-auth+acl": [{"name": "key-auth"}, {"name": "acl", "config": {"allow": ["bench"]}}],
    "rate-limiting": [{"name": "rate-limiting",
                       "config": {"hour": 1000000000, "limit_by": "ip"}}],
    "ip-restriction": [{"name": "ip-restriction", "config": {"allow": ["127.0.0.0/8"]}}],
    "request-size-limiting": [{"name": "request-size-limiting"}],
    "cors": [{"name": "cors", "config": {"origins": ["http://bench.example"]}}],
    "correlation-id": [{"name": "correlation-id"}],
    "request-transformer": [{"name": "request-transformer",
                             "config": {"add": {"headers": ["X-Bench:1"]}}}],
    "response-transformer": [{"name": "response-transformer",
                              "config": {"add": {"headers": ["X-Bench:1"]}}}],
}


def lua(plugins):
    names = {p["name"] for p in plugins}
    lines = ["local i = 0", "request = function()", "  i = i + 1",
             "  local h = {}"]
    if "key-auth" in names:
        lines.append("  h[\"apikey\"] = \"bench-key-\" .. (i %% %d)" % CONSUMERS)
    if "basic-auth" in names:
        creds = ", ".join('"%s"' % base64.b64encode(("bench-%d:pw-%d" % (k, k)).encode()).decode()
                          for k in range(CONSUMERS))
        lines[0:0] = ["local creds = {%s}" % creds]
        lines.append('  h["Authorization"] = "Basic " .. creds[(i %% %d) + 1]' % CONSUMERS)
    if "cors" in names:
        lines.append('  h["Origin"] = "http://bench.example"')
    lines += ['  return wrk.format("GET", "/", h)', "end"]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    consumers = [{"username": "bench-%d" % k,
                  "keyauth_credentials": [{"key": "bench-key-%d" % k}],
                  "basicauth_credentials": [{"username": "bench-%d" % k,
                                             "password": "pw-%d" % k}],
                  "acls": [{"group": "bench"}]} for k in range(CONSUMERS)]
    for name, plugins in SCENARIOS.items():
        doc = {"_format_version": "3.0",
               "services": [{"name": "bench", "url": args.upstream,
                             "routes": [{"name": "bench", "paths": ["/"]}]}],
               "consumers": consumers, "plugins": plugins}
        with open(os.path.join(args.out, name + ".json"), "w") as f:
            json.dump(doc, f)
        with open(os.path.join(args.out, name + ".lua"), "w") as f:
            f.write(lua(plugins))
    print(" ".join(SCENARIOS))


if __name__ == "__main__":
    main()
