package main

import (
	"net/http"
	"testing"

	"github.com/Kong/go-pdk/test"
)

// echo runs a POST through the plugin against go-pdk's echo service: the upstream
// answers 200 with the request's headers and body.
func echo(t *testing.T, c *Config, contentType, body string, extra http.Header) *test.TestEnv {
	t.Helper()
	h := http.Header{"Content-Type": {contentType}}
	for k, v := range extra {
		h[k] = v
	}
	env, err := test.New(t, test.Request{Method: "POST", Url: "http://api.test/", Headers: h, Body: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	env.DoHttp(c)
	return env
}

func expectBody(t *testing.T, env *test.TestEnv, status int, body string) {
	t.Helper()
	if env.ClientRes.Status != status {
		t.Errorf("status = %d, want %d", env.ClientRes.Status, status)
	}
	if string(env.ClientRes.Body) != body {
		t.Errorf("body = %s, want %s", env.ClientRes.Body, body)
	}
}

// untouched checks that the plugin did not answer: the gateway sends what it holds.
func untouched(t *testing.T, env *test.TestEnv, body string) {
	t.Helper()
	if !env.IsRunning() {
		t.Error("kong.response.exit was called for a body that should be left alone")
	}
	expectBody(t, env, 200, body)
}

func TestReplacesInOrder(t *testing.T) {
	c := &Config{Replace: []Replacement{{From: "internal.example", To: "api.example"}, {From: "api.", To: "www."}, {From: ""}}}
	env := echo(t, c, "text/plain", "see https://internal.example/x and internal.example/y", nil)
	expectBody(t, env, 200, "see https://www.example/x and www.example/y")
	if env.IsRunning() {
		t.Error("the rewritten body was not sent with kong.response.exit")
	}
	if got := env.ClientRes.Headers.Get("Content-Type"); got != "text/plain" {
		t.Errorf("content-type changed to %q", got)
	}
}

func TestEnvelopeWrapsJSON(t *testing.T) {
	c := &Config{Envelope: "data", Replace: []Replacement{{From: `"secret"`, To: `"***"`}}}
	env := echo(t, c, "application/json", `{"token": "secret", "n": 12345678901234567890}`, nil)
	expectBody(t, env, 200, `{"data":{"token":"***","n":12345678901234567890},"status":200}`)
	if got := env.ClientRes.Headers.Get("Content-Type"); got != "application/json; charset=utf-8" {
		t.Errorf("content-type = %q", got)
	}
}

func TestEnvelopeKeepsTheUpstreamStatus(t *testing.T) {
	env, err := test.New(t, test.Request{Method: "GET", Url: "http://api.test/missing"})
	if err != nil {
		t.Fatal(err)
	}
	env.ServiceRes = test.Response{
		Status:  404,
		Headers: http.Header{"Content-Type": {"application/problem+json"}, "X-Upstream": {"1"}},
		Body:    []byte(`{"title":"not found"}`),
	}
	env.DoResponse(&Config{Envelope: "error"})
	expectBody(t, env, 404, `{"error":{"title":"not found"},"status":404}`)
	if env.ClientRes.Headers.Get("X-Upstream") != "1" {
		t.Error("an upstream header was lost")
	}
}

func TestEnvelopeSkipsBodiesThatAreNotJSON(t *testing.T) {
	// Declared JSON but not parseable: replacements still apply, no envelope.
	env := echo(t, &Config{Envelope: "data", Replace: []Replacement{{From: "a", To: "b"}}}, "application/json", "{a", nil)
	expectBody(t, env, 200, "{b")
	if got := env.ClientRes.Headers.Get("Content-Type"); got != "application/json" {
		t.Errorf("content-type = %q", got)
	}
	// Not declared JSON: no envelope, nothing else to do, so no answer at all.
	untouched(t, echo(t, &Config{Envelope: "data"}, "text/html; charset=utf-8", `{"a":1}`, nil), `{"a":1}`)
}

func TestLeavesAlone(t *testing.T) {
	replace := []Replacement{{From: "x", To: "y"}}
	t.Run("no match", func(t *testing.T) {
		untouched(t, echo(t, &Config{Replace: replace}, "text/plain", "abc", nil), "abc")
	})
	t.Run("compressed", func(t *testing.T) {
		untouched(t, echo(t, &Config{Replace: replace}, "text/plain", "xxx", http.Header{"Content-Encoding": {"gzip"}}), "xxx")
	})
	t.Run("other content type", func(t *testing.T) {
		c := &Config{Replace: replace, ContentTypes: []string{"application/json", " TEXT/HTML "}}
		untouched(t, echo(t, c, "text/plain", "xxx", nil), "xxx")
		expectBody(t, echo(t, c, "text/html; charset=utf-8", "xxx", nil), 200, "yyy")
	})
	t.Run("empty config", func(t *testing.T) {
		untouched(t, echo(t, &Config{}, "text/plain", "xxx", nil), "xxx")
	})
	t.Run("identity encoding is rewritten", func(t *testing.T) {
		expectBody(t, echo(t, &Config{Replace: replace}, "text/plain", "xxx", http.Header{"Content-Encoding": {"identity"}}), 200, "yyy")
	})
}
