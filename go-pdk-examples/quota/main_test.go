package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/bridge"
	"github.com/Kong/go-pdk/bridge/bridgetest"
	"github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"github.com/Kong/go-pdk/test"
)

// at pins the clock for the rest of the test.
func at(t *testing.T, when time.Time) {
	saved := now
	now = func() time.Time { return when }
	t.Cleanup(func() { now = saved })
}

var noon = time.Date(2025, 7, 1, 12, 0, 15, 0, time.UTC)

// request sends one GET through the plugin. go-pdk's test environment answers
// kong.client.get_consumer with consumer "001" and kong.client.get_ip with
// 10.10.10.1.
func request(t *testing.T, c *Config) *test.TestEnv {
	t.Helper()
	env, err := test.New(t, test.Request{Method: "GET", Url: "http://api.test/"})
	if err != nil {
		t.Fatal(err)
	}
	env.DoHttp(c)
	return env
}

func expectHeaders(t *testing.T, env *test.TestEnv, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := env.ClientRes.Headers.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestCountsDownThenRefuses(t *testing.T) {
	at(t, noon)
	c := &Config{Minute: 3, scope: t.Name()}
	for i, left := range []string{"2", "1", "0"} {
		env := request(t, c)
		if env.ClientRes.Status != 200 {
			t.Fatalf("request %d: status %d", i+1, env.ClientRes.Status)
		}
		expectHeaders(t, env, map[string]string{
			"X-RateLimit-Limit-Minute": "3", "X-RateLimit-Remaining-Minute": left,
			"RateLimit-Limit": "3", "RateLimit-Remaining": left, "RateLimit-Reset": "45", "Retry-After": "",
		})
	}
	for i := 0; i < 2; i++ { // refused requests are not counted, and stay refused
		env := request(t, c)
		if env.ClientRes.Status != 429 {
			t.Fatalf("over the limit: status %d", env.ClientRes.Status)
		}
		expectHeaders(t, env, map[string]string{
			"Retry-After": "45", "X-RateLimit-Remaining-Minute": "0", "RateLimit-Reset": "45",
			"Content-Type": "application/json; charset=utf-8",
		})
		var body struct{ Message string }
		if err := json.Unmarshal(env.ClientRes.Body, &body); err != nil || body.Message != "API rate limit exceeded" {
			t.Errorf("body %q (%v)", env.ClientRes.Body, err)
		}
	}
}

func TestNextMinuteStartsAfresh(t *testing.T) {
	at(t, noon)
	c := &Config{Minute: 1, scope: t.Name()}
	request(t, c)
	if env := request(t, c); env.ClientRes.Status != 429 {
		t.Fatalf("status %d, want 429", env.ClientRes.Status)
	}
	at(t, noon.Add(45*time.Second)) // 12:01:00, a new window
	env := request(t, c)
	if env.ClientRes.Status != 200 {
		t.Fatalf("new window: status %d", env.ClientRes.Status)
	}
	expectHeaders(t, env, map[string]string{"X-RateLimit-Remaining-Minute": "0", "RateLimit-Reset": "60"})
	// The previous window's bucket of this test is forgotten.
	counters.Lock()
	for k, b := range counters.m {
		if b.window != noon.Add(45*time.Second).Unix()/60 {
			t.Errorf("bucket %s of window %d survived the sweep", k, b.window)
		}
	}
	counters.Unlock()
}

func TestCallersAndScopesAreCountedApart(t *testing.T) {
	at(t, noon)
	byConsumer := &Config{Minute: 1, scope: t.Name()}
	byIP := &Config{Minute: 1, LimitBy: "ip", scope: t.Name()}
	otherRoute := &Config{Minute: 1, scope: t.Name() + "-other"}
	for _, c := range []*Config{byConsumer, byIP, otherRoute} {
		if env := request(t, c); env.ClientRes.Status != 200 {
			t.Errorf("%+v: first request refused", c)
		}
	}
	for _, c := range []*Config{byConsumer, byIP, otherRoute} {
		if env := request(t, c); env.ClientRes.Status != 429 {
			t.Errorf("%+v: second request admitted", c)
		}
	}
}

func TestHiddenHeaders(t *testing.T) {
	at(t, noon)
	c := &Config{Minute: 1, HideClientHeaders: true, scope: t.Name()}
	env := request(t, c)
	expectHeaders(t, env, map[string]string{"X-RateLimit-Limit-Minute": "", "RateLimit-Remaining": ""})
	env = request(t, c)
	if env.ClientRes.Status != 429 {
		t.Fatalf("status %d", env.ClientRes.Status)
	}
	expectHeaders(t, env, map[string]string{"Retry-After": "45", "X-RateLimit-Limit-Minute": ""})
}

func TestZeroLimitIsNotEnforced(t *testing.T) {
	at(t, noon)
	for i := 0; i < 3; i++ {
		if env := request(t, &Config{scope: t.Name()}); env.ClientRes.Status != 200 {
			t.Fatalf("status %d", env.ClientRes.Status)
		}
	}
}

// Without a consumer the gateway answers kong.client.get_consumer with an empty
// message (Kong's nil); the caller is then its address.
func TestAnonymousCallerIsCountedByAddress(t *testing.T) {
	at(t, noon)
	conn := bridgetest.Mock(t, []bridgetest.MockStep{
		{Method: "kong.client.get_consumer", Ret: &kong_plugin_protocol.Consumer{}},
		{Method: "kong.client.get_ip", Ret: bridge.WrapString("192.0.2.7")},
		{Method: "kong.response.set_headers"},
	})
	defer conn.Close()
	c := &Config{Minute: 2, scope: t.Name()}
	c.Access(pdk.Init(conn))
	counters.Lock()
	b := counters.m[t.Name()+"|ip:192.0.2.7"]
	counters.Unlock()
	if b == nil || b.count != 1 {
		t.Errorf("bucket for 192.0.2.7 = %+v, want one request", b)
	}
}

func TestConfigDecoding(t *testing.T) {
	// What the gateway sends to start an instance (Kong's cjson of the conf).
	var c Config
	err := json.Unmarshal([]byte(`{"minute":5,"limit_by":null,"hide_client_headers":false,
		"__plugin_id":"7f0c","__seq__":12,"route_id":null,"service_id":"s1","consumer_id":null}`), &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.Minute != 5 || c.LimitBy != "" || c.scope != "7f0c" {
		t.Errorf("decoded %+v", c)
	}
	c = Config{}
	if err := json.Unmarshal([]byte(`{"minute":5,"route_id":"r1","service_id":null}`), &c); err != nil || c.scope != "r1/" {
		t.Errorf("without __plugin_id: %+v, %v", c, err)
	}
	// A type mismatch fails the instance, as go-pdk's own decoding does.
	if err := json.Unmarshal([]byte(`{"minute":"5"}`), &Config{}); err == nil {
		t.Error(`"minute":"5" was accepted`)
	}
}

func TestRefusalThroughTheHarnessStopsTheRequest(t *testing.T) {
	at(t, noon)
	c := &Config{Minute: 1, scope: t.Name()}
	request(t, c)
	env, err := test.New(t, test.Request{Method: "POST", Url: "http://api.test/orders", Body: []byte("{}"),
		Headers: http.Header{"X-Echo": {"1"}}})
	if err != nil {
		t.Fatal(err)
	}
	env.DoHttp(c)
	if env.ClientRes.Status != 429 || env.ClientRes.Headers.Get("X-Echo") != "" {
		t.Errorf("status %d, echo header %q: the request reached the service", env.ClientRes.Status,
			env.ClientRes.Headers.Get("X-Echo"))
	}
}
