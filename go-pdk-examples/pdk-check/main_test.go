package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/bridge"
	"github.com/Kong/go-pdk/bridge/bridgetest"
	"github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"github.com/Kong/go-pdk/test"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// gateway is go-pdk's simulated gateway (test.TestEnv) completed with the
// methods it does not answer (kong.nginx.*, kong.log.serialize,
// kong.request.get_uri_captures); everything else goes to the harness.
type gateway struct {
	*test.TestEnv
	t      *testing.T
	ngxCtx map[string]interface{}
	pdk    *pdk.PDK // on this gateway, for the handlers the harness cannot run
}

const serialized = `{"request":{"method":"POST"},"response":{"status":203}}`

func (g *gateway) Handle(method string, args []byte) []byte {
	var out proto.Message
	str := func() string {
		var s kong_plugin_protocol.String
		if err := proto.Unmarshal(args, &s); err != nil {
			g.t.Errorf("%s: %s", method, err)
		}
		return s.V
	}
	switch method {
	case "kong.nginx.get_var":
		if name := str(); name == "request_method" {
			out = bridge.WrapString("POST")
		}
	case "kong.nginx.get_tls1_version_str":
	case "kong.nginx.get_subsystem":
		out = bridge.WrapString("http")
	case "kong.nginx.req_start_time":
		out = &kong_plugin_protocol.Number{V: 1700000000.25}
	case "kong.nginx.set_ctx":
		var kv kong_plugin_protocol.KV
		if err := proto.Unmarshal(args, &kv); err != nil {
			g.t.Errorf("%s: %s", method, err)
		}
		g.ngxCtx[kv.K] = kv.V.AsInterface()
		out = bridge.WrapString("")
	case "kong.nginx.get_ctx":
		if v, ok := g.ngxCtx[str()]; ok {
			var err error
			if out, err = structpb.NewValue(v); err != nil {
				g.t.Errorf("%s: %s", method, err)
			}
		}
	case "kong.log.serialize":
		out = bridge.WrapString(serialized)
	case "kong.request.get_uri_captures":
		out = &kong_plugin_protocol.UriCapturesResult{
			Unnamed: [][]byte{[]byte("x")},
			Named:   map[string][]byte{"kind": []byte("x")},
		}
	case "kong.response.exit":
		// The harness ends the event only for an exit with headers; end it
		// for ExitStatus too, since go-pdk closes the connection after it.
		d := g.TestEnv.Handle(method, args)
		var ea kong_plugin_protocol.ExitArgs
		if err := proto.Unmarshal(args, &ea); err == nil && ea.Headers == nil {
			g.Finish()
		}
		return d
	default:
		return g.TestEnv.Handle(method, args)
	}
	if out == nil {
		return nil
	}
	d, err := proto.Marshal(out)
	if err != nil {
		g.t.Errorf("%s: %s", method, err)
	}
	return d
}

func newGateway(t *testing.T) *gateway {
	t.Helper()
	env, err := test.New(t, test.Request{
		Method: "POST",
		Url:    "http://pdk.example:8000/check/x?a=1&b=two%20words&a=3&flag",
		Headers: http.Header{
			"User-Agent":  {"pdk-check-test"},
			"X-Multi":     {"one", "two"},
			"X-Pdk-Clear": {"please"},
		},
		Body: []byte("hello from the client"),
	})
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{TestEnv: env, t: t, ngxCtx: map[string]interface{}{}}
	g.pdk = pdk.Init(bridgetest.MockFunc(g))
	return g
}

// run is the harness's DoHttp on this gateway: access, an echo service,
// response, log.
func (g *gateway) run(c *Config) {
	c.Access(g.pdk)
	if !g.IsRunning() {
		c.Log(g.pdk)
		return
	}
	g.ServiceRes = g.ServiceReq.ToResponse()
	g.DoResponse(c)
	c.Log(g.pdk)
}

type result struct {
	V   json.RawMessage `json:"v"`
	Err string          `json:"err"`
}

func decodeReport(t *testing.T, data []byte) map[string]result {
	t.Helper()
	var r map[string]result
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("report is not JSON (%s): %s", err, data)
	}
	return r
}

func headerReport(t *testing.T, h http.Header, name string) map[string]result {
	t.Helper()
	b64 := h.Get(name)
	if b64 == "" {
		t.Fatalf("no %s header in %v", name, h)
	}
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("%s is not base64: %s", name, err)
	}
	return decodeReport(t, data)
}

// expect checks report entries against JSON texts.
func expect(t *testing.T, r map[string]result, want map[string]string) {
	t.Helper()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		got, ok := r[k]
		if !ok {
			t.Errorf("%s: not in the report", k)
			continue
		}
		if got.Err != "" {
			t.Errorf("%s: error %q", k, got.Err)
			continue
		}
		var g, w interface{}
		if err := json.Unmarshal(got.V, &g); err != nil {
			t.Errorf("%s: %s", k, err)
		}
		if err := json.Unmarshal([]byte(want[k]), &w); err != nil {
			t.Fatalf("%s: bad expectation %s", k, want[k])
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s = %s, want %s", k, got.V, want[k])
		}
	}
}

// every PDK method go-pdk exposes: the plugin protocol's table less
// kong.log.set_serialize_value.
var everyMethod = strings.Fields(`
kong.client.get_ip kong.client.get_forwarded_ip kong.client.get_port kong.client.get_forwarded_port
kong.client.get_credential kong.client.load_consumer kong.client.get_consumer
kong.client.authenticate
kong.client.get_protocol kong.ctx.shared.set kong.ctx.shared.get kong.ip.is_trusted
kong.log.alert kong.log.crit kong.log.err kong.log.warn kong.log.notice kong.log.info kong.log.debug
kong.log.serialize kong.nginx.get_var kong.nginx.get_tls1_version_str kong.nginx.set_ctx
kong.nginx.get_ctx kong.nginx.req_start_time kong.nginx.get_subsystem kong.node.get_id
kong.node.get_memory_stats kong.request.get_scheme kong.request.get_host kong.request.get_port
kong.request.get_forwarded_scheme kong.request.get_forwarded_host kong.request.get_forwarded_port
kong.request.get_http_version kong.request.get_method kong.request.get_path
kong.request.get_path_with_query kong.request.get_raw_query kong.request.get_query_arg
kong.request.get_query kong.request.get_header kong.request.get_headers kong.request.get_raw_body
kong.request.get_uri_captures kong.response.get_status kong.response.get_header
kong.response.get_headers kong.response.get_source kong.response.set_status
kong.response.set_header kong.response.add_header kong.response.clear_header
kong.response.set_headers kong.response.exit kong.router.get_route kong.router.get_service
kong.service.set_upstream kong.service.set_target kong.service.request.set_scheme
kong.service.request.set_path kong.service.request.set_raw_query kong.service.request.set_method
kong.service.request.set_query kong.service.request.set_header kong.service.request.add_header
kong.service.request.clear_header kong.service.request.set_headers kong.service.request.set_raw_body
kong.service.response.get_status kong.service.response.get_header kong.service.response.get_headers
kong.service.response.get_raw_body`)

// harnessConsumer is the consumer go-pdk's harness answers with.
const harnessConsumer = `{"id": "001", "created_at": 0, "username": "Jon Doe",
	"custom_id": "", "tags": null}`

func fullConfig(logPath string) *Config {
	return &Config{
		Consumer:       "8a6c7a3e-35c6-4c4e-9f0a-2f4f1c1d9b10",
		Username:       "pdk-user",
		Credential:     "c0ffee00-0000-4000-8000-000000000001",
		Upstream:       "pdk-check-upstream",
		TargetHost:     "127.0.0.1",
		TargetPort:     8080,
		ResponseStatus: 203,
		LogPath:        logPath,
	}
}

func readLog(t *testing.T, path string) map[string]result {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	if len(lines) != 1 {
		t.Fatalf("%d log lines, want 1: %s", len(lines), data)
	}
	var line struct {
		Phase   string          `json:"phase"`
		Results json.RawMessage `json:"results"`
	}
	if err := json.Unmarshal(lines[0], &line); err != nil || line.Phase != "log" {
		t.Fatalf("bad log line (%v): %s", err, lines[0])
	}
	return decodeReport(t, line.Results)
}

func TestEveryMethodIsCalled(t *testing.T) {
	called := map[string]bool{}
	note := func(r map[string]result) {
		for k, a := range r {
			if a.Err != "" {
				t.Errorf("%s: %s", k, a.Err)
			}
			called[method(k)] = true
		}
	}
	g := newGateway(t)
	logPath := filepath.Join(t.TempDir(), "check.log")
	g.run(fullConfig(logPath))
	note(headerReport(t, g.ClientRes.Headers, "X-Pdk-Check-Access"))
	note(headerReport(t, g.ClientRes.Headers, "X-Pdk-Check-Response"))
	note(readLog(t, logPath))

	e := newGateway(t)
	e.run(&Config{Mode: "exit", ExitStatus: 451})
	if e.ClientRes.Status == 451 {
		called["kong.response.exit"] = true
	}
	for _, m := range everyMethod {
		if !called[m] {
			t.Errorf("%s was not called", m)
		}
		delete(called, m)
	}
	for m := range called {
		t.Errorf("%s is not a method of the table", m)
	}
}

// The harness keeps the client's request apart from the service's, so the
// getters asked again after a setter are not checked here (under Kong they
// see the change: tests/integration/bridge/test_pdk_methods.py).
func TestAccessReport(t *testing.T) {
	g := newGateway(t)
	g.run(fullConfig(""))
	expect(t, headerReport(t, g.ClientRes.Headers, "X-Pdk-Check-Access"), map[string]string{
		"kong.request.get_method":                   `"POST"`,
		"kong.request.get_scheme":                   `"http"`,
		"kong.request.get_host":                     `"pdk.example"`,
		"kong.request.get_port":                     `8000`,
		"kong.request.get_http_version":             `1.1`,
		"kong.request.get_path":                     `"/check/x"`,
		"kong.request.get_raw_query":                `"a=1&b=two%20words&a=3&flag"`,
		"kong.request.get_query_arg(b)":             `"two words"`,
		"kong.request.get_query_arg(absent)":        `""`,
		"kong.request.get_query(-1)":                `{"a": ["1", "3"], "b": ["two words"], "flag": [""]}`,
		"kong.request.get_header(x-multi)":          `"one"`,
		"kong.request.get_header(x-absent)":         `""`,
		"kong.request.get_raw_body":                 `"hello from the client"`,
		"kong.request.get_uri_captures":             `{"unnamed": ["x"], "named": {"kind": "x"}}`,
		"kong.client.get_ip":                        `"10.10.10.1"`,
		"kong.client.get_protocol(true)":            `"https"`,
		"kong.client.get_consumer":                  harnessConsumer,
		"kong.client.get_credential":                `{"id": "000:00", "consumer_id": "000:01"}`,
		"kong.client.authenticate":                  `null`,
		"kong.ip.is_trusted(127.0.0.1)":             `true`,
		"kong.node.get_id":                          `"a9777ac2-57e6-482b-a3c4-ef3d6ca41a1f"`,
		"kong.nginx.get_var(request_method)":        `"POST"`,
		"kong.nginx.get_var(pdk_check_no_such_var)": `""`,
		"kong.nginx.get_subsystem":                  `"http"`,
		"kong.nginx.req_start_time":                 `1700000000.25`,
		"kong.nginx.get_ctx(pdk_ctx_str)":           `"ctx value"`,
		"kong.nginx.get_ctx(pdk_ctx_num)":           `7.5`,
		"kong.nginx.get_ctx(pdk_ctx_num) as int":    `7`,
		"kong.nginx.get_ctx(pdk_ctx_str) as any":    `"ctx value"`,
		"kong.nginx.get_ctx(pdk_ctx_absent)":        `null`,
		"kong.ctx.shared.get(pdk_str)":              `"shared value"`,
		"kong.ctx.shared.get(pdk_num)":              `42.5`,
		"kong.ctx.shared.get(pdk_obj)":              `{"list": ["x", 1], "yes": true}`,
		"kong.ctx.shared.get(pdk_absent)":           `null`,
		"kong.log.warn":                             `null`,
		"kong.service.set_target":                   `null`,
	})
}

func TestSettersReachServiceAndClient(t *testing.T) {
	g := newGateway(t)
	g.run(fullConfig(""))
	req := g.ServiceReq
	if req.Method != "PUT" || req.Url != "http://pdk.example:8000/echoed/path?q=v+1&q=v2&z=last" {
		t.Errorf("service request %s %s", req.Method, req.Url)
	}
	if string(req.Body) != "body set by pdk-check" {
		t.Errorf("service request body %q", req.Body)
	}
	for name, want := range map[string][]string{
		"X-Pdk-Set":   {"s1"},
		"X-Pdk-Add":   {"a1", "a2"},
		"X-Pdk-Multi": {"m1", "m2"},
		"X-Pdk-One":   {"o"},
		"X-Pdk-Clear": nil,
		"X-Multi":     {"one", "two"},
	} {
		if got := req.Headers.Values(name); !reflect.DeepEqual(got, want) {
			t.Errorf("service request %s = %q, want %q", name, got, want)
		}
	}
	res := g.ClientRes
	if res.Status != 203 {
		t.Errorf("client status %d, want 203 (set in the response phase)", res.Status)
	}
	for name, want := range map[string][]string{
		"X-Pdk-Resp":       {"r1"},
		"X-Pdk-Resp-Add":   {"a1", "a2"},
		"X-Pdk-Resp-Multi": {"m1", "m2"},
		"X-Pdk-Resp-Clear": nil,
	} {
		if got := res.Headers.Values(name); !reflect.DeepEqual(got, want) {
			t.Errorf("client response %s = %q, want %q", name, got, want)
		}
	}
}

func TestResponseReport(t *testing.T) {
	g := newGateway(t)
	g.run(fullConfig(""))
	sum := sha256.Sum256([]byte("body set by pdk-check"))
	digest, _ := json.Marshal(map[string]interface{}{"len": 21, "sha256": hex.EncodeToString(sum[:])})
	expect(t, headerReport(t, g.ClientRes.Headers, "X-Pdk-Check-Response"), map[string]string{
		"kong.service.response.get_status":           `200`,
		"kong.service.response.get_header(x-absent)": `""`,
		"kong.service.response.get_raw_body":         string(digest),
		"kong.response.get_status":                   `200`,
		"kong.response.get_header(x-pdk-resp)":       `"r1"`,
		"kong.response.get_source":                   `"service"`,
		"kong.response.set_status":                   `null`,
	})
}

func TestLogLine(t *testing.T) {
	g := newGateway(t)
	logPath := filepath.Join(t.TempDir(), "check.log")
	g.run(fullConfig(logPath))
	expect(t, readLog(t, logPath), map[string]string{
		"kong.log.serialize":                   serialized,
		"kong.response.get_status":             `203`,
		"kong.response.get_header(x-pdk-resp)": `"r1"`,
		"kong.ctx.shared.get(pdk_str)":         `"shared value"`,
		"kong.ctx.shared.get(pdk_log)":         `"set in log"`,
		"kong.nginx.get_ctx(pdk_ctx_str)":      `"ctx value"`,
		"kong.nginx.get_ctx(pdk_ctx_log)":      `"set in log"`,
		"kong.nginx.req_start_time":            `1700000000.25`,
		"kong.request.get_uri_captures":        `{"unnamed": ["x"], "named": {"kind": "x"}}`,
	})
}

func TestExit(t *testing.T) {
	g := newGateway(t)
	g.run(&Config{Mode: "exit", ExitStatus: 451})
	if g.IsRunning() {
		t.Fatal("kong.response.exit was not called")
	}
	res := g.ClientRes
	if res.Status != 451 {
		t.Errorf("status %d, want 451", res.Status)
	}
	if got := res.Headers.Values("X-Pdk-Exit"); !reflect.DeepEqual(got, []string{"e1", "e2"}) {
		t.Errorf("X-Pdk-Exit = %q", got)
	}
	if got := res.Headers.Get("X-Pdk-Resp"); got != "r1" {
		t.Errorf("X-Pdk-Resp = %q (set before the exit)", got)
	}
	expect(t, decodeReport(t, res.Body), map[string]string{
		"kong.request.get_method": `"POST"`,
		"kong.request.get_path":   `"/check/x"`,
	})
	if g.ServiceReq.Method != "POST" || g.ServiceReq.Headers.Get("X-Pdk-Set") != "" {
		t.Error("the exit modes changed the service request")
	}
}

func TestExitStatus(t *testing.T) {
	g := newGateway(t)
	g.run(&Config{Mode: "exit_status", ExitStatus: 204})
	if g.IsRunning() || g.ClientRes.Status != 204 || len(g.ClientRes.Body) != 0 {
		t.Errorf("running %v, status %d, body %q; want an exit with 204 and no body",
			g.IsRunning(), g.ClientRes.Status, g.ClientRes.Body)
	}
}

func TestSkip(t *testing.T) {
	g := newGateway(t)
	c := fullConfig("")
	c.Skip = []string{"kong.log.crit", "kong.log.alert", "kong.request.get_header"}
	g.run(c)
	r := headerReport(t, g.ClientRes.Headers, "X-Pdk-Check-Access")
	for k := range r {
		switch method(k) {
		case "kong.log.crit", "kong.log.alert", "kong.request.get_header":
			t.Errorf("%s was called", k)
		}
	}
	if _, ok := r["kong.log.err"]; !ok {
		t.Error("kong.log.err was skipped too")
	}
}

func TestWithoutConsumerNothingIsAuthenticated(t *testing.T) {
	g := newGateway(t)
	g.run(&Config{})
	r := headerReport(t, g.ClientRes.Headers, "X-Pdk-Check-Access")
	for _, k := range []string{"kong.client.load_consumer(id)", "kong.client.authenticate",
		"kong.service.set_target", "kong.service.set_upstream"} {
		if _, ok := r[k]; ok {
			t.Errorf("%s was called without configuration", k)
		}
	}
	// The harness answers every load_consumer with its one consumer.
	expect(t, r, map[string]string{"kong.client.load_consumer(nobody, true)": harnessConsumer})
}

func TestDump(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command on PATH: %s", err)
	}
	bin := filepath.Join(t.TempDir(), "pdk-check")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %s\n%s", err, out)
	}
	out, err := exec.Command(bin, "-dump", "-kong-prefix", "/run/sluice").Output()
	if err != nil {
		t.Fatalf("-dump: %s", err)
	}
	var d struct {
		SocketPath string
		Plugins    []struct {
			Name     string
			Priority int
			Phases   []string
			Schema   struct {
				Fields []map[string]struct {
					Fields []map[string]json.RawMessage `json:"fields"`
				} `json:"fields"`
			}
		}
	}
	if err := json.Unmarshal(out, &d); err != nil || len(d.Plugins) != 1 {
		t.Fatalf("-dump printed %s", out)
	}
	p := d.Plugins[0]
	if p.Name != "pdk-check" || p.Priority != Priority ||
		d.SocketPath != "/run/sluice/pdk-check.socket" ||
		!reflect.DeepEqual(p.Phases, []string{"certificate", "rewrite", "access", "response", "log"}) {
		t.Errorf("-dump printed %s", out)
	}
	var fields []string
	for _, f := range p.Schema.Fields[0]["config"].Fields {
		for name := range f {
			fields = append(fields, name)
		}
	}
	want := []string{"mode", "exit_status", "response_status", "consumer", "username",
		"credential", "upstream", "target_host", "target_port", "log_path", "skip"}
	if !reflect.DeepEqual(fields, want) {
		t.Errorf("config fields %v, want %v", fields, want)
	}
}
