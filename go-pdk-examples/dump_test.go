// Package examples holds only this test: it builds every example plugin server and
// checks what its -dump prints, the JSON a gateway reads through
// pluginserver_<name>_query_cmd to learn the plugin's name, priority, version,
// phases and configuration schema.
package examples

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
)

type dump struct {
	Protocol   string
	SocketPath string
	Plugins    []struct {
		Name     string
		Version  string
		Priority int
		Phases   []string
		Schema   struct {
			Name   string `json:"name"`
			Fields []map[string]struct {
				Type   string                       `json:"type"`
				Fields []map[string]json.RawMessage `json:"fields"`
			} `json:"fields"`
		}
	}
}

var want = []struct {
	name     string
	version  string
	priority int
	phases   []string
	fields   []string // the config record's fields, in order
}{
	{"hello", "0.2", 1, []string{"access"}, []string{"message", "header"}},
	{"api-auth", "1.0.0", 1250, []string{"access"}, []string{"key_header", "keys", "hmac_secret",
		"hmac_identity", "signature_header", "clock_skew", "identity_header", "hide_credentials"}},
	{"body-rewrite", "1.0.0", 800, []string{"response"}, []string{"replace", "envelope", "content_types"}},
	{"json-log", "1.0.0", 9, []string{"log"}, []string{"path", "reopen"}},
	{"quota", "1.0.0", 910, []string{"access"}, []string{"minute", "limit_by", "hide_client_headers"}},
}

func TestDump(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building the examples needs the go command on PATH: %s", err)
	}
	bin := t.TempDir()
	args := []string{"build", "-o", bin + string(filepath.Separator)}
	for _, w := range want {
		args = append(args, "./"+w.name)
	}
	if out, err := exec.Command(goTool, args...).CombinedOutput(); err != nil {
		t.Fatalf("go %v: %s\n%s", args, err, out)
	}
	for _, w := range want {
		t.Run(w.name, func(t *testing.T) {
			out, err := exec.Command(filepath.Join(bin, w.name), "-dump", "-kong-prefix", "/run/sluice").Output()
			if err != nil {
				t.Fatalf("%s -dump: %s", w.name, err)
			}
			var d dump
			if err := json.Unmarshal(out, &d); err != nil {
				t.Fatalf("-dump printed something that is not JSON (%s): %s", err, out)
			}
			if d.Protocol != "ProtoBuf:1" || d.SocketPath != "/run/sluice/"+w.name+".socket" || len(d.Plugins) != 1 {
				t.Fatalf("-dump printed %s", out)
			}
			p := d.Plugins[0]
			if p.Name != w.name || p.Version != w.version || p.Priority != w.priority ||
				!reflect.DeepEqual(p.Phases, w.phases) || p.Schema.Name != w.name {
				t.Errorf("-dump printed %s", out)
			}
			if len(p.Schema.Fields) != 1 || p.Schema.Fields[0]["config"].Type != "record" {
				t.Fatalf("schema without a config record: %s", out)
			}
			var fields []string
			for _, f := range p.Schema.Fields[0]["config"].Fields {
				for name := range f {
					fields = append(fields, name)
				}
			}
			if !reflect.DeepEqual(fields, w.fields) {
				t.Errorf("config fields = %v, want %v", fields, w.fields)
			}
		})
	}
}
