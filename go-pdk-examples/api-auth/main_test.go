package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/Kong/go-pdk/test"
)

var clock = time.Date(2025, 7, 1, 12, 0, 0, 0, time.UTC)

func init() {
	now = func() time.Time { return clock }
}

func conf() *Config {
	return &Config{
		Keys:       []Key{{Key: "k-alice", Identity: "alice"}, {Key: "k-bob", Identity: "bob"}, {Key: ""}},
		HmacSecret: "s3cret",
	}
}

// run sends one GET through the plugin, as the gateway would, and returns the env.
func run(t *testing.T, c *Config, url string, headers http.Header) *test.TestEnv {
	t.Helper()
	env, err := test.New(t, test.Request{Method: "GET", Url: url, Headers: headers})
	if err != nil {
		t.Fatal(err)
	}
	env.DoHttp(c)
	return env
}

// denied checks a short-circuited answer: its status, its JSON message, and that the
// request never reached the service (the echo service would have answered 200).
func denied(t *testing.T, env *test.TestEnv, status int, message string) {
	t.Helper()
	if env.ClientRes.Status != status {
		t.Fatalf("status = %d, want %d", env.ClientRes.Status, status)
	}
	var body struct{ Message string }
	if err := json.Unmarshal(env.ClientRes.Body, &body); err != nil {
		t.Fatalf("body %q is not JSON: %s", env.ClientRes.Body, err)
	}
	if body.Message != message {
		t.Errorf("message = %q, want %q", body.Message, message)
	}
	if ct := env.ClientRes.Headers.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("content-type = %q", ct)
	}
	if challenge := env.ClientRes.Headers.Get("WWW-Authenticate"); (status == 401) != (challenge != "") {
		t.Errorf("status %d with WWW-Authenticate %q", status, challenge)
	}
}

func admitted(t *testing.T, env *test.TestEnv, header, identity string) {
	t.Helper()
	if env.ClientRes.Status != 200 {
		t.Fatalf("status = %d (%s), want 200", env.ClientRes.Status, env.ClientRes.Body)
	}
	if got := env.ServiceReq.Headers.Get(header); got != identity {
		t.Errorf("upstream %s = %q, want %q", header, got, identity)
	}
}

func TestNoCredentialsIs401(t *testing.T) {
	denied(t, run(t, conf(), "http://api.test/orders", nil), 401, "No API key found in request")
}

func TestValidKeyPassesWithIdentity(t *testing.T) {
	env := run(t, conf(), "http://api.test/orders", http.Header{"X-Api-Key": {"k-bob"}})
	admitted(t, env, "x-credential-identifier", "bob")
	if env.ServiceReq.Headers.Get("x-api-key") != "k-bob" {
		t.Error("the key was removed although hide_credentials is off")
	}
}

func TestWrongKeyIs403(t *testing.T) {
	denied(t, run(t, conf(), "http://api.test/orders", http.Header{"X-Api-Key": {"k-mallory"}}),
		403, "Invalid API key")
}

func TestKeyIsJudgedAloneEvenWithAValidSignature(t *testing.T) {
	date := clock.Format(http.TimeFormat)
	denied(t, run(t, conf(), "http://api.test/orders", http.Header{
		"X-Api-Key":   {"nope"},
		"Date":        {date},
		"X-Signature": {Signature("s3cret", "GET", "/orders", date)},
	}), 403, "Invalid API key")
}

func TestSpoofedIdentityIsReplacedAndCredentialsHidden(t *testing.T) {
	c := conf()
	c.KeyHeader = "apikey"
	c.IdentityHeader = "x-caller"
	c.HideCredentials = true
	env := run(t, c, "http://api.test/orders", http.Header{"Apikey": {"k-alice"}, "X-Caller": {"admin"}})
	admitted(t, env, "x-caller", "alice")
	if got := env.ServiceReq.Headers.Get("apikey"); got != "" {
		t.Errorf("hide_credentials left apikey %q upstream", got)
	}
}

func TestKeyWithoutIdentity(t *testing.T) {
	c := &Config{Keys: []Key{{Key: "solo"}}}
	admitted(t, run(t, c, "http://api.test/", http.Header{"X-Api-Key": {"solo"}}), "x-credential-identifier", "api-key")
}

func TestNoKeysConfiguredRejectsEveryKey(t *testing.T) {
	denied(t, run(t, &Config{}, "http://api.test/", http.Header{"X-Api-Key": {""}}), 401, "No API key found in request")
	denied(t, run(t, &Config{}, "http://api.test/", http.Header{"X-Api-Key": {"x"}}), 403, "Invalid API key")
}

func TestValidSignaturePasses(t *testing.T) {
	c := conf()
	c.HmacIdentity = "batch-job"
	c.HideCredentials = true
	date := clock.Add(-time.Minute).Format(http.TimeFormat)
	// The query is not signed: only method, path and Date are.
	env := run(t, c, "http://api.test/orders/7?expand=1", http.Header{
		"Date":        {date},
		"X-Signature": {Signature("s3cret", "get", "/orders/7", date)},
	})
	admitted(t, env, "x-credential-identifier", "batch-job")
	if env.ServiceReq.Headers.Get("x-signature") != "" {
		t.Error("hide_credentials left the signature upstream")
	}
}

func TestSignatureErrors(t *testing.T) {
	date := clock.Format(http.TimeFormat)
	good := Signature("s3cret", "GET", "/orders", date)
	cases := []struct {
		name    string
		headers http.Header
		status  int
		message string
	}{
		{"wrong secret", http.Header{"Date": {date}, "X-Signature": {Signature("other", "GET", "/orders", date)}},
			403, "Invalid signature"},
		{"other path", http.Header{"Date": {date}, "X-Signature": {Signature("s3cret", "GET", "/admin", date)}},
			403, "Invalid signature"},
		{"not hex", http.Header{"Date": {date}, "X-Signature": {"zz" + good[2:]}}, 403, "Invalid signature"},
		{"no date", http.Header{"X-Signature": {good}}, 401, "A signed request needs a Date header"},
		{"bad date", http.Header{"Date": {"yesterday"}, "X-Signature": {good}},
			403, "Date header is not an HTTP date within the allowed clock skew"},
		{"stale date", http.Header{
			"Date":        {clock.Add(-301 * time.Second).Format(http.TimeFormat)},
			"X-Signature": {Signature("s3cret", "GET", "/orders", clock.Add(-301*time.Second).Format(http.TimeFormat))},
		}, 403, "Date header is not an HTTP date within the allowed clock skew"},
		{"future date", http.Header{
			"Date":        {clock.Add(301 * time.Second).Format(http.TimeFormat)},
			"X-Signature": {Signature("s3cret", "GET", "/orders", clock.Add(301*time.Second).Format(http.TimeFormat))},
		}, 403, "Date header is not an HTTP date within the allowed clock skew"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			denied(t, run(t, conf(), "http://api.test/orders", tc.headers), tc.status, tc.message)
		})
	}
}

func TestConfiguredClockSkew(t *testing.T) {
	c := conf()
	c.ClockSkew = 600
	date := clock.Add(-500 * time.Second).Format(http.TimeFormat)
	env := run(t, c, "http://api.test/orders", http.Header{
		"Date": {date}, "X-Signature": {Signature("s3cret", "GET", "/orders", date)},
	})
	admitted(t, env, "x-credential-identifier", "hmac")
}

func TestSignatureIgnoredWithoutSecret(t *testing.T) {
	c := conf()
	c.HmacSecret = ""
	date := clock.Format(http.TimeFormat)
	denied(t, run(t, c, "http://api.test/orders", http.Header{
		"Date": {date}, "X-Signature": {Signature("", "GET", "/orders", date)},
	}), 401, "No API key found in request")
}
