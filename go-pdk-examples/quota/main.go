// Command quota is a go-pdk plugin that limits how many requests a caller may make
// per minute, keeping its counters in the plugin server's own memory.
//
// The caller is the authenticated consumer (kong.client.get_consumer) when there is
// one and limit_by is "consumer" (the default), and the client address
// (kong.client.get_ip) otherwise. Windows are fixed calendar minutes of the plugin
// server's clock. A request that finds its caller's count at the limit is answered
// 429 with Retry-After (the seconds left in the window) and a JSON message, through
// kong.response.exit; refused requests are not counted. Admitted and refused
// responses carry Kong rate-limiting's headers: X-RateLimit-Limit-Minute,
// X-RateLimit-Remaining-Minute, RateLimit-Limit, RateLimit-Remaining and
// RateLimit-Reset, unless hide_client_headers is set.
//
// State and its limits. Counters are per plugin entity (the configuration's
// __plugin_id, so an edited configuration keeps its counts and two routes never
// share theirs), per caller and per minute, in one map under one mutex: go-pdk runs
// the events of every connection in its own goroutine. The map forgets past
// windows once per minute. Counters live in this process only: a restarted plugin
// server starts from zero, and gateways that each start their own plugin server
// each count on their own, as Kong's "local" policy does per node.
package main

import (
	"encoding/json"
	"log"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/server"
)

const (
	Version = "1.0.0"
	// Priority 910 is rate-limiting's: after authentication (which names the
	// consumer), before the plugins that transform the request.
	Priority = 910
)

// Config is the plugin configuration; -dump prints the schema derived from it.
// scope is filled by UnmarshalJSON and, being unexported, is not part of the schema.
type Config struct {
	Minute            int    `json:"minute"`              // requests per caller per minute; required, > 0
	LimitBy           string `json:"limit_by"`            // "consumer" (default) or "ip"
	HideClientHeaders bool   `json:"hide_client_headers"` // no rate-limit headers on responses
	scope             string // counter namespace: the plugin entity's id
}

// UnmarshalJSON decodes the configuration as go-pdk would, and keeps the plugin
// entity's id that the gateway sends beside the fields (__plugin_id; route_id and
// service_id when a gateway leaves it out) as the counters' namespace.
func (conf *Config) UnmarshalJSON(b []byte) error {
	type fields Config // the same fields without this method
	if err := json.Unmarshal(b, (*fields)(conf)); err != nil {
		return err
	}
	var meta struct {
		PluginID  string `json:"__plugin_id"`
		RouteID   string `json:"route_id"`
		ServiceID string `json:"service_id"`
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		// A route_id that is not a string, say: count in the shared namespace.
		return nil
	}
	conf.scope = meta.PluginID
	if conf.scope == "" {
		conf.scope = meta.RouteID + "/" + meta.ServiceID
	}
	return nil
}

func New() interface{} {
	return &Config{}
}

// now is the clock windows are cut from; tests pin it.
var now = time.Now

type bucket struct {
	window int64 // Unix minute the count belongs to
	count  int
}

// counters maps scope, caller and nothing else to the caller's current window.
var counters = struct {
	sync.Mutex
	m     map[string]*bucket
	swept int64 // the last window in which old buckets were forgotten
}{m: map[string]*bucket{}}

// take counts one request of key against limit in the window of t, unless the
// count is already at the limit. It returns whether the request is admitted and
// the requests left in the window after it.
func take(key string, limit int, t time.Time) (admitted bool, remaining int) {
	window := t.Unix() / 60
	counters.Lock()
	defer counters.Unlock()
	if counters.swept != window {
		for k, b := range counters.m {
			if b.window != window {
				delete(counters.m, k)
			}
		}
		counters.swept = window
	}
	b := counters.m[key]
	if b == nil || b.window != window {
		b = &bucket{window: window}
		counters.m[key] = b
	}
	if b.count >= limit {
		return false, 0
	}
	b.count++
	return true, limit - b.count
}

// Access counts the request or refuses it.
func (conf *Config) Access(kong *pdk.PDK) {
	if conf.Minute <= 0 {
		// Misconfigured: a go-pdk schema cannot require the field, so say so on
		// every request rather than refusing all traffic.
		kong.Log.Err("quota: config.minute must be a positive number of requests; not limiting")
		return
	}
	caller, err := conf.caller(kong)
	if err != nil {
		log.Printf("quota: identifying the caller: %s", err)
		return
	}
	t := now()
	admitted, remaining := take(conf.scope+"|"+caller, conf.Minute, t)
	reset := 60 - t.Unix()%60
	headers := map[string][]string{}
	if !conf.HideClientHeaders {
		limit, left := strconv.Itoa(conf.Minute), strconv.Itoa(remaining)
		headers["X-RateLimit-Limit-Minute"] = []string{limit}
		headers["X-RateLimit-Remaining-Minute"] = []string{left}
		headers["RateLimit-Limit"] = []string{limit}
		headers["RateLimit-Remaining"] = []string{left}
		headers["RateLimit-Reset"] = []string{strconv.FormatInt(reset, 10)}
	}
	if !admitted {
		// RFC 6585 4: 429 with Retry-After (RFC 9110 10.2.3) in seconds.
		headers["Retry-After"] = []string{strconv.FormatInt(reset, 10)}
		headers["Content-Type"] = []string{"application/json; charset=utf-8"}
		kong.Response.Exit(http.StatusTooManyRequests, []byte(`{"message":"API rate limit exceeded"}`), headers)
		return
	}
	if len(headers) > 0 {
		// One call for all five headers: each PDK call is a round trip.
		if err := kong.Response.SetHeaders(headers); err != nil {
			log.Printf("quota: setting the rate-limit headers: %s", err)
		}
	}
}

// caller names who is counted: "consumer:<id>" or "ip:<address>".
func (conf *Config) caller(kong *pdk.PDK) (string, error) {
	if conf.LimitBy != "ip" {
		consumer, err := kong.Client.GetConsumer()
		if err != nil {
			return "", err
		}
		if consumer.Id != "" {
			return "consumer:" + consumer.Id, nil
		}
	}
	ip, err := kong.Client.GetIp()
	if err != nil {
		return "", err
	}
	return "ip:" + ip, nil
}

func main() {
	if err := server.StartServer(New, Version, Priority); err != nil {
		log.Fatal(err)
	}
}
