// Command pdk-check is a conformance plugin: it calls every PDK method go-pdk
// exposes (the plugin protocol's method table, less kong.log.set_serialize_value,
// which go-pdk leaves out) and reports what the gateway answered, so that a test
// can check each answer against Kong's.
//
// A global instance also has a rewrite phase (see Rewrite). Three phases,
// three reports. Each report is a JSON object keyed by the wire
// method name, with the argument in parentheses when the call takes one and a
// note after a space when one method is called more than once
// ("kong.request.get_header(x-multi)", "kong.client.get_consumer (before
// authenticate)"); each value is {"v": answer} or {"v": null, "err": "..."}.
//
//   - access: every getter of kong.request, kong.client, kong.router, kong.node,
//     kong.nginx, kong.ip and kong.ctx, the seven kong.log levels, then the
//     setters of kong.service.request and kong.response (fixed values, listed in
//     README.md), kong.service.set_upstream/set_target when configured. The
//     report goes to the client base64-encoded in X-Pdk-Check-Access; with mode
//     "exit" it is instead the body of kong.response.exit (mode "exit_status":
//     kong.response.exit with the status alone).
//   - response: kong.service.response.* and the kong.response getters on the
//     upstream's answer, then kong.response.set_status when configured; the
//     report goes to the client in X-Pdk-Check-Response.
//   - log: the calls Kong serves in its log phase (from the snapshot it takes
//     when the response has been sent); the report is appended as one JSON line
//     {"phase": "log", "results": {...}} to the file log_path names.
//
// Every call is made even when an earlier one failed: a conformance report is
// only useful if it is complete. Methods listed in config.skip are not called
// (kong.log.crit and kong.log.alert, for a test that must keep its error log
// free of crit lines).
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"log"
	"os"
	"strings"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/client"
	"github.com/Kong/go-pdk/entities"
	"github.com/Kong/go-pdk/server"
)

const (
	Version = "1.0.0"
	// Priority 1 runs after every bundled plugin, so the report sees what they
	// did (an authenticated consumer, headers they set).
	Priority = 1
)

// Config is the plugin configuration. Every field is optional.
type Config struct {
	Mode           string `json:"mode"`            // "" (report), "exit", "exit_status" or "refuse_tls"
	ExitStatus     int    `json:"exit_status"`     // status of the exit modes; default 200
	ResponseStatus int    `json:"response_status"` // set in the response phase when not 0
	// Not consumer_id: the gateway adds route_id, service_id and consumer_id
	// (the plugin's scope) to every instance's configuration.
	Consumer   string   `json:"consumer"`    // id of the consumer loaded by id and authenticated
	Username   string   `json:"username"`    // the same consumer's username, loaded by username
	Credential string   `json:"credential"`  // credential id given to kong.client.authenticate
	Upstream   string   `json:"upstream"`    // kong.service.set_upstream when set
	TargetHost string   `json:"target_host"` // kong.service.set_target when set
	TargetPort int      `json:"target_port"`
	LogPath    string   `json:"log_path"` // file the log phase appends its report to
	Skip       []string `json:"skip"`     // wire method names not to call
}

func New() interface{} {
	return &Config{}
}

// answer is one call's outcome. V is always present (null when the call failed
// or answered nothing) so that a reader can tell "answered null" from "not
// called" by the key alone.
type answer struct {
	V   interface{} `json:"v"`
	Err string      `json:"err,omitempty"`
}

// report collects the answers of one phase.
type report struct {
	skip    map[string]bool
	answers map[string]answer
}

func newReport(conf *Config) *report {
	r := &report{skip: map[string]bool{}, answers: map[string]answer{}}
	for _, m := range conf.Skip {
		r.skip[m] = true
	}
	return r
}

// method is the wire method name a report key starts with.
func method(key string) string {
	if i := strings.IndexAny(key, "( "); i >= 0 {
		return key[:i]
	}
	return key
}

// call runs f unless key's method is skipped and records what it returned.
func (r *report) call(key string, f func() (interface{}, error)) {
	if r.skip[method(key)] {
		return
	}
	v, err := f()
	a := answer{V: v}
	if err != nil {
		a = answer{Err: err.Error()}
	}
	r.answers[key] = a
}

// get and get1 adapt a getter without and with an argument for call.
func get[T any](f func() (T, error)) func() (interface{}, error) {
	return func() (interface{}, error) { return f() }
}

func get1[A, T any](f func(A) (T, error), a A) func() (interface{}, error) {
	return func() (interface{}, error) { return f(a) }
}

// set1 and set2 adapt a setter with one and two arguments for set.
func set1[A any](f func(A) error, a A) func() error {
	return func() error { return f(a) }
}

func set2[A, B any](f func(A, B) error, a A, b B) func() error {
	return func() error { return f(a, b) }
}

// set runs a setter, which answers nothing but an error.
func (r *report) set(key string, f func() error) {
	r.call(key, func() (interface{}, error) { return nil, f() })
}

func (r *report) json() []byte {
	b, err := json.Marshal(r.answers)
	if err != nil {
		// Every value comes from go-pdk's own types; this cannot happen.
		log.Printf("pdk-check: encoding the report: %s", err)
		return []byte("{}")
	}
	return b
}

// header hands the report to the client, base64-encoded in a response header.
func (r *report) header(kong *pdk.PDK, name string) {
	if err := kong.Response.SetHeader(name, base64.StdEncoding.EncodeToString(r.json())); err != nil {
		log.Printf("pdk-check: setting %s: %s", name, err)
	}
}

// bodyDigest describes a body by its length and SHA-256, which fit in a header
// whatever the body holds.
func bodyDigest(b []byte, err error) (interface{}, error) {
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	return map[string]interface{}{"len": len(b), "sha256": hex.EncodeToString(sum[:])}, nil
}

func captures(unnamed [][]byte, named map[string][]byte, err error) (interface{}, error) {
	if err != nil {
		return nil, err
	}
	u := make([]string, len(unnamed))
	for i, c := range unnamed {
		u[i] = string(c)
	}
	n := make(map[string]string, len(named))
	for k, c := range named {
		n[k] = string(c)
	}
	return map[string]interface{}{"unnamed": u, "named": n}, nil
}

// Access reports every access-phase answer, then proxies or exits.
// Certificate runs, for a global instance, during each TLS handshake, before
// any request: it logs the client's address, and with mode "refuse_tls" ends
// the handshake (kong.response.exit, which refuses the connection there).
func (conf *Config) Certificate(kong *pdk.PDK) {
	ip, err := kong.Client.GetIp()
	if err != nil {
		log.Printf("pdk-check: certificate: %s", err)
		return
	}
	_ = kong.Log.Notice("pdk-check: certificate phase for ", ip)
	if conf.Mode == "refuse_tls" {
		kong.Response.ExitStatus(403)
	}
}

// Rewrite runs, as in Kong, only for an instance that applies globally, and
// before the router: it tells the client (X-Pdk-Check-Rewrite: the path it
// saw) and the upstream (X-Pdk-Check-Rewrite: ran) that it did.
func (conf *Config) Rewrite(kong *pdk.PDK) {
	path, err := kong.Request.GetPath()
	if err != nil {
		log.Printf("pdk-check: rewrite: %s", err)
		return
	}
	_ = kong.Response.SetHeader("X-Pdk-Check-Rewrite", path)
	_ = kong.ServiceRequest.SetHeader("X-Pdk-Check-Rewrite", "ran")
}

func (conf *Config) Access(kong *pdk.PDK) {
	r := newReport(conf)
	requestGetters(r, kong)
	clientCalls(r, kong, conf)
	nodeRouterIP(r, kong)
	nginxCalls(r, kong)
	ctxCalls(r, kong)
	logCalls(r, kong)

	if conf.Mode == "exit" || conf.Mode == "exit_status" {
		responseSetters(r, kong)
		status := conf.ExitStatus
		if status == 0 {
			status = 200
		}
		if r.skip["kong.response.exit"] {
			return
		}
		// Exit closes go-pdk's connection to the gateway: nothing may follow.
		if conf.Mode == "exit_status" {
			kong.Response.ExitStatus(status)
			return
		}
		kong.Response.Exit(status, r.json(), map[string][]string{
			"Content-Type": {"application/json"},
			"X-Pdk-Exit":   {"e1", "e2"},
		})
		return
	}

	serviceRequestSetters(r, kong)
	responseSetters(r, kong)
	if conf.Upstream != "" {
		r.set("kong.service.set_upstream", set1(kong.Service.SetUpstream, conf.Upstream))
	}
	if conf.TargetHost != "" {
		r.set("kong.service.set_target", set2(kong.Service.SetTarget, conf.TargetHost, conf.TargetPort))
	}
	r.header(kong, "X-Pdk-Check-Access")
}

func requestGetters(r *report, kong *pdk.PDK) {
	q := kong.Request
	r.call("kong.request.get_scheme", get(q.GetScheme))
	r.call("kong.request.get_host", get(q.GetHost))
	r.call("kong.request.get_port", get(q.GetPort))
	r.call("kong.request.get_forwarded_scheme", get(q.GetForwardedScheme))
	r.call("kong.request.get_forwarded_host", get(q.GetForwardedHost))
	r.call("kong.request.get_forwarded_port", get(q.GetForwardedPort))
	r.call("kong.request.get_http_version", get(q.GetHttpVersion))
	r.call("kong.request.get_method", get(q.GetMethod))
	r.call("kong.request.get_path", get(q.GetPath))
	r.call("kong.request.get_path_with_query", get(q.GetPathWithQuery))
	r.call("kong.request.get_raw_query", get(q.GetRawQuery))
	// Not a bare argument ("?flag"): Kong's get_query_arg answers true for
	// one, which its String reply cannot carry.
	for _, k := range []string{"a", "b", "absent"} {
		r.call("kong.request.get_query_arg("+k+")", get1(q.GetQueryArg, k))
	}
	r.call("kong.request.get_query(-1)", get1(q.GetQuery, -1))
	r.call("kong.request.get_query(2)", get1(q.GetQuery, 2))
	for _, k := range []string{"user-agent", "x-multi", "x-absent"} {
		r.call("kong.request.get_header("+k+")", get1(q.GetHeader, k))
	}
	r.call("kong.request.get_headers(-1)", get1(q.GetHeaders, -1))
	r.call("kong.request.get_headers(2)", get1(q.GetHeaders, 2))
	r.call("kong.request.get_raw_body", func() (interface{}, error) {
		b, err := q.GetRawBody()
		return string(b), err
	})
	r.call("kong.request.get_uri_captures", func() (interface{}, error) {
		return captures(q.GetUriCaptures())
	})
}

func clientCalls(r *report, kong *pdk.PDK, conf *Config) {
	c := kong.Client
	r.call("kong.client.get_ip", get(c.GetIp))
	r.call("kong.client.get_forwarded_ip", get(c.GetForwardedIp))
	r.call("kong.client.get_port", get(c.GetPort))
	r.call("kong.client.get_forwarded_port", get(c.GetForwardedPort))
	r.call("kong.client.get_protocol(false)", get1(c.GetProtocol, false))
	r.call("kong.client.get_protocol(true)", get1(c.GetProtocol, true))
	r.call("kong.client.get_consumer (before authenticate)", get(c.GetConsumer))
	r.call("kong.client.get_credential (before authenticate)", get(c.GetCredential))

	// Kong raises on load_consumer(id, false) with an id that is not a UUID,
	// so the by-id call waits for one in the configuration.
	var consumer *entities.Consumer
	if conf.Consumer != "" {
		r.call("kong.client.load_consumer(id)", func() (interface{}, error) {
			v, err := c.LoadConsumer(conf.Consumer, false)
			if err == nil && v.Id != "" {
				consumer = &v
			}
			return v, err
		})
	}
	if conf.Username != "" {
		r.call("kong.client.load_consumer(username, true)", func() (interface{}, error) {
			return c.LoadConsumer(conf.Username, true)
		})
	}
	r.call("kong.client.load_consumer(nobody, true)", func() (interface{}, error) {
		return c.LoadConsumer("pdk-check-nobody", true)
	})
	if consumer != nil {
		cred := &client.AuthenticatedCredential{Id: conf.Credential, ConsumerId: consumer.Id}
		r.set("kong.client.authenticate", set2(c.Authenticate, consumer, cred))
	}
	r.call("kong.client.get_consumer", get(c.GetConsumer))
	r.call("kong.client.get_credential", get(c.GetCredential))
}

func nodeRouterIP(r *report, kong *pdk.PDK) {
	r.call("kong.router.get_route", get(kong.Router.GetRoute))
	r.call("kong.router.get_service", get(kong.Router.GetService))
	r.call("kong.node.get_id", get(kong.Node.GetId))
	r.call("kong.node.get_memory_stats", get(kong.Node.GetMemoryStats))
	for _, a := range []string{"127.0.0.1", "192.0.2.1"} {
		r.call("kong.ip.is_trusted("+a+")", get1(kong.IP.IsTrusted, a))
	}
}

// nginxVars are the variables reported by kong.nginx.get_var; the last one
// does not exist.
var nginxVars = []string{
	"request_uri", "request_method", "uri", "args", "host", "scheme", "server_protocol",
	"remote_addr", "realip_remote_addr", "http_x_multi", "pdk_check_no_such_var",
}

func nginxCalls(r *report, kong *pdk.PDK) {
	n := kong.Nginx
	for _, v := range nginxVars {
		r.call("kong.nginx.get_var("+v+")", get1(n.GetVar, v))
	}
	r.call("kong.nginx.get_tls1_version_str", get(n.GetTLS1VersionStr))
	r.call("kong.nginx.get_subsystem", get(n.GetSubsystem))
	r.call("kong.nginx.req_start_time", get(n.ReqStartTime))
	r.set("kong.nginx.set_ctx(pdk_ctx_str)", set2(n.SetCtx, "pdk_ctx_str", "ctx value"))
	r.set("kong.nginx.set_ctx(pdk_ctx_num)", set2(n.SetCtx, "pdk_ctx_num", 7.5))
	r.call("kong.nginx.get_ctx(pdk_ctx_str)", get1(n.GetCtxString, "pdk_ctx_str"))
	r.call("kong.nginx.get_ctx(pdk_ctx_num)", get1(n.GetCtxFloat, "pdk_ctx_num"))
	r.call("kong.nginx.get_ctx(pdk_ctx_num) as int", get1(n.GetCtxInt, "pdk_ctx_num"))
	r.call("kong.nginx.get_ctx(pdk_ctx_str) as any", get1(n.GetCtxAny, "pdk_ctx_str"))
	r.call("kong.nginx.get_ctx(pdk_ctx_absent)", get1(n.GetCtxAny, "pdk_ctx_absent"))
}

func ctxCalls(r *report, kong *pdk.PDK) {
	c := kong.Ctx
	r.set("kong.ctx.shared.set(pdk_str)", set2(c.SetShared, "pdk_str", "shared value"))
	r.set("kong.ctx.shared.set(pdk_num)", set2(c.SetShared, "pdk_num", 42.5))
	r.set("kong.ctx.shared.set(pdk_obj)", func() error {
		return c.SetShared("pdk_obj", map[string]interface{}{"list": []interface{}{"x", 1}, "yes": true})
	})
	r.call("kong.ctx.shared.get(pdk_str)", get1(c.GetSharedString, "pdk_str"))
	r.call("kong.ctx.shared.get(pdk_num)", get1(c.GetSharedFloat, "pdk_num"))
	r.call("kong.ctx.shared.get(pdk_obj)", get1(c.GetSharedAny, "pdk_obj"))
	r.call("kong.ctx.shared.get(pdk_absent)", get1(c.GetSharedAny, "pdk_absent"))
}

// logCalls logs "conformance says <level> <n>" at each level, the number being
// a Go int, which travels as a protobuf double.
func logCalls(r *report, kong *pdk.PDK) {
	l := kong.Log
	levels := []struct {
		name string
		f    func(...interface{}) error
	}{
		{"debug", l.Debug}, {"info", l.Info}, {"notice", l.Notice}, {"warn", l.Warn},
		{"err", l.Err}, {"crit", l.Crit}, {"alert", l.Alert},
	}
	for i, lv := range levels {
		r.set("kong.log."+lv.name, func() error { return lv.f("conformance says ", lv.name+" ", i+1) })
	}
}

// serviceRequestSetters changes the request the upstream gets; README.md lists
// the changes. Two getters are asked again afterwards, as Kong's reflect them.
func serviceRequestSetters(r *report, kong *pdk.PDK) {
	s := kong.ServiceRequest
	r.set("kong.service.request.set_scheme(http)", set1(s.SetScheme, "http"))
	r.set("kong.service.request.set_method", set1(s.SetMethod, "PUT"))
	r.set("kong.service.request.set_path", set1(s.SetPath, "/echoed/path"))
	r.set("kong.service.request.set_raw_query", set1(s.SetRawQuery, "first=1&second=2"))
	r.call("kong.request.get_raw_query (after set_raw_query)", func() (interface{}, error) {
		return kong.Request.GetRawQuery()
	})
	r.set("kong.service.request.set_query", func() error {
		return s.SetQuery(map[string][]string{"q": {"v 1", "v2"}, "z": {"last"}})
	})
	r.set("kong.service.request.set_header", set2(s.SetHeader, "x-pdk-set", "s1"))
	r.call("kong.request.get_header(x-pdk-set) (after set_header)", func() (interface{}, error) {
		return kong.Request.GetHeader("x-pdk-set")
	})
	r.set("kong.service.request.add_header(a1)", set2(s.AddHeader, "x-pdk-add", "a1"))
	r.set("kong.service.request.add_header(a2)", set2(s.AddHeader, "x-pdk-add", "a2"))
	r.set("kong.service.request.clear_header", set1(s.ClearHeader, "x-pdk-clear"))
	r.set("kong.service.request.set_headers", func() error {
		return s.SetHeaders(map[string][]string{"x-pdk-multi": {"m1", "m2"}, "x-pdk-one": {"o"}})
	})
	r.set("kong.service.request.set_raw_body", set1(s.SetRawBody, "body set by pdk-check"))
}

// responseSetters shapes the response the client gets; README.md lists them.
func responseSetters(r *report, kong *pdk.PDK) {
	p := kong.Response
	r.set("kong.response.set_status", set1(p.SetStatus, 201))
	r.set("kong.response.set_header", set2(p.SetHeader, "x-pdk-resp", "r1"))
	r.set("kong.response.add_header(a1)", set2(p.AddHeader, "x-pdk-resp-add", "a1"))
	r.set("kong.response.add_header(a2)", set2(p.AddHeader, "x-pdk-resp-add", "a2"))
	r.set("kong.response.set_headers", func() error {
		return p.SetHeaders(map[string][]string{"x-pdk-resp-multi": {"m1", "m2"}})
	})
	r.set("kong.response.set_header(x-pdk-resp-clear)", set2(p.SetHeader, "x-pdk-resp-clear", "gone"))
	r.set("kong.response.clear_header", set1(p.ClearHeader, "x-pdk-resp-clear"))
}

// Response reports the upstream's answer as the response phase sees it. Having
// this handler makes the gateway hold the whole upstream response.
func (conf *Config) Response(kong *pdk.PDK) {
	r := newReport(conf)
	s := kong.ServiceResponse
	r.call("kong.service.response.get_status", get(s.GetStatus))
	for _, h := range []string{"content-type", "x-upstream-name", "x-absent"} {
		r.call("kong.service.response.get_header("+h+")", get1(s.GetHeader, h))
	}
	r.call("kong.service.response.get_headers(-1)", get1(s.GetHeaders, -1))
	r.call("kong.service.response.get_raw_body", func() (interface{}, error) {
		return bodyDigest(s.GetRawBody())
	})
	responseGetters(r, kong)
	if conf.ResponseStatus != 0 {
		r.set("kong.response.set_status", set1(kong.Response.SetStatus, conf.ResponseStatus))
	}
	r.header(kong, "X-Pdk-Check-Response")
}

func responseGetters(r *report, kong *pdk.PDK) {
	p := kong.Response
	r.call("kong.response.get_status", get(p.GetStatus))
	for _, h := range []string{"x-pdk-resp", "content-type", "x-absent"} {
		r.call("kong.response.get_header("+h+")", get1(p.GetHeader, h))
	}
	r.call("kong.response.get_headers(-1)", get1(p.GetHeaders, -1))
	r.call("kong.response.get_source", get(p.GetSource))
}

// Log appends the log-phase report to log_path. Only the calls Kong answers
// in its log phase are made.
func (conf *Config) Log(kong *pdk.PDK) {
	if conf.LogPath == "" {
		return
	}
	r := newReport(conf)
	r.call("kong.log.serialize", func() (interface{}, error) {
		s, err := kong.Log.Serialize()
		if err != nil {
			return nil, err
		}
		// Embedded as an object when it is JSON, as the text otherwise.
		var v interface{}
		if json.Unmarshal([]byte(s), &v) != nil {
			return s, nil
		}
		return v, nil
	})
	q := kong.Request
	for _, h := range []string{"x-pdk-set", "user-agent"} {
		r.call("kong.request.get_header("+h+")", get1(q.GetHeader, h))
	}
	r.call("kong.request.get_headers(-1)", get1(q.GetHeaders, -1))
	r.call("kong.request.get_uri_captures", func() (interface{}, error) {
		return captures(q.GetUriCaptures())
	})
	responseGetters(r, kong)
	c := kong.Ctx
	r.call("kong.ctx.shared.get(pdk_str)", get1(c.GetSharedString, "pdk_str"))
	r.call("kong.ctx.shared.get(pdk_obj)", get1(c.GetSharedAny, "pdk_obj"))
	r.set("kong.ctx.shared.set(pdk_log)", set2(c.SetShared, "pdk_log", "set in log"))
	r.call("kong.ctx.shared.get(pdk_log)", get1(c.GetSharedString, "pdk_log"))
	n := kong.Nginx
	r.call("kong.nginx.get_ctx(pdk_ctx_str)", get1(n.GetCtxString, "pdk_ctx_str"))
	r.set("kong.nginx.set_ctx(pdk_ctx_log)", set2(n.SetCtx, "pdk_ctx_log", "set in log"))
	r.call("kong.nginx.get_ctx(pdk_ctx_log)", get1(n.GetCtxString, "pdk_ctx_log"))
	r.call("kong.nginx.req_start_time", get(n.ReqStartTime))

	line, err := json.Marshal(map[string]interface{}{"phase": "log", "results": r.answers})
	if err != nil {
		log.Printf("pdk-check: encoding the log report: %s", err)
		return
	}
	f, err := os.OpenFile(conf.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		log.Printf("pdk-check: %s", err)
		return
	}
	// One write(2) on an O_APPEND descriptor: lines of concurrent requests
	// never interleave.
	if _, err := f.Write(append(line, '\n')); err != nil {
		log.Printf("pdk-check: writing %s: %s", conf.LogPath, err)
	}
	f.Close()
}

func main() {
	if err := server.StartServer(New, Version, Priority); err != nil {
		log.Fatal(err)
	}
}
