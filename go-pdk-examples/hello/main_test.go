package main

import (
	"net/http"
	"testing"

	"github.com/Kong/go-pdk/test"
)

func TestGreetsTheHostHeader(t *testing.T) {
	env, err := test.New(t, test.Request{
		Method:  "GET",
		Url:     "http://example.com/",
		Headers: http.Header{"Host": {"example.com"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	env.DoHttp(&Config{Message: "hi"})
	if got, want := env.ClientRes.Status, 200; got != want {
		t.Errorf("status = %d, want %d", got, want)
	}
	if got, want := env.ClientRes.Headers.Get("x-hello-from-go"), "Go says hi to example.com"; got != want {
		t.Errorf("x-hello-from-go = %q, want %q", got, want)
	}
}

func TestConfiguredHeaderAndDefaultMessage(t *testing.T) {
	env, err := test.New(t, test.Request{
		Method:  "GET",
		Url:     "http://example.com/",
		Headers: http.Header{"Host": {"example.com"}, "X-User": {"ada"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	env.DoHttp(&Config{Header: "x-user"})
	if got, want := env.ClientRes.Headers.Get("x-hello-from-go"), "Go says hello to ada"; got != want {
		t.Errorf("x-hello-from-go = %q, want %q", got, want)
	}
}

func TestMissingHeaderGreetsNobody(t *testing.T) {
	env, err := test.New(t, test.Request{Method: "GET", Url: "http://example.com/"})
	if err != nil {
		t.Fatal(err)
	}
	env.DoHttp(&Config{Message: "hi", Header: "x-absent"})
	if got, want := env.ClientRes.Headers.Get("x-hello-from-go"), "Go says hi to "; got != want {
		t.Errorf("x-hello-from-go = %q, want %q", got, want)
	}
	// The request reaches the service untouched.
	if got := env.ServiceReq.Headers.Get("x-hello-from-go"); got != "" {
		t.Errorf("service request got x-hello-from-go %q", got)
	}
}
