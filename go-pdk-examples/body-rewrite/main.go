// Command body-rewrite is a go-pdk plugin that rewrites the upstream response body
// in the response phase:
//
//   - each configured replacement {from, to} replaces every occurrence of from, in
//     the order configured;
//   - with envelope set, a JSON body (by its Content-Type) is then wrapped as
//     {"<envelope>": <body>, "status": <status>}.
//
// Having a Response handler makes the gateway buffer the whole upstream response
// before the plugin runs (Kong's buffered proxying). The handler reads the body with
// kong.service.response.get_raw_body and, when it changed something, sends the new
// body with kong.response.exit(status, body, headers): the ProtoBuf protocol has no
// kong.response.set_raw_body, and exit is how a go-pdk plugin replaces a response in
// this phase. The response's status and headers stay as they were, apart from
// Content-Length (which exit recomputes) and, for an envelope, Content-Type.
// A body left unchanged is not sent back at all: the gateway sends the one it holds.
//
// Bodies with a Content-Encoding other than identity are left alone: replacing bytes
// inside a gzip stream would corrupt it.
package main

import (
	"bytes"
	"encoding/json"
	"log"
	"mime"
	"strings"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/server"
)

const (
	Version = "1.0.0"
	// Priority 800 is response-transformer's.
	Priority = 800
)

// Replacement replaces every occurrence of From with To.
type Replacement struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Config is the plugin configuration; -dump prints the schema derived from it.
type Config struct {
	Replace      []Replacement `json:"replace"`       // applied in order; empty from is skipped
	Envelope     string        `json:"envelope"`      // member name wrapping JSON bodies; empty: no envelope
	ContentTypes []string      `json:"content_types"` // media types to rewrite; empty: every type
}

func New() interface{} {
	return &Config{}
}

// Response rewrites the body. Errors from the PDK mean the connection to the gateway
// broke: they are logged in the plugin server's log and the response goes out as the
// gateway holds it.
func (conf *Config) Response(kong *pdk.PDK) {
	if len(conf.Replace) == 0 && conf.Envelope == "" {
		return
	}
	encoding, err := kong.Response.GetHeader("content-encoding")
	if err != nil {
		log.Printf("body-rewrite: reading content-encoding: %s", err)
		return
	}
	if encoding != "" && !strings.EqualFold(encoding, "identity") {
		return
	}
	contentType, err := kong.Response.GetHeader("content-type")
	if err != nil {
		log.Printf("body-rewrite: reading content-type: %s", err)
		return
	}
	mediaType, _, _ := mime.ParseMediaType(contentType)
	if !conf.wants(mediaType) {
		return
	}
	body, err := kong.ServiceResponse.GetRawBody()
	if err != nil {
		log.Printf("body-rewrite: reading the upstream body: %s", err)
		return
	}
	status, err := kong.Response.GetStatus()
	if err != nil {
		log.Printf("body-rewrite: reading the status: %s", err)
		return
	}

	out := conf.replace(body)
	headers := map[string][]string{}
	if conf.Envelope != "" && isJSON(mediaType) {
		wrapped, err := envelope(conf.Envelope, out, status)
		if err != nil {
			// Not JSON after all (or not after the replacements): send it unwrapped.
			log.Printf("body-rewrite: not wrapping a %s body that does not parse: %s", mediaType, err)
		} else {
			out = wrapped
			headers["Content-Type"] = []string{"application/json; charset=utf-8"}
		}
	}
	if bytes.Equal(out, body) {
		return
	}
	kong.Response.Exit(status, out, headers)
}

// wants reports whether mediaType is one the configuration rewrites.
func (conf *Config) wants(mediaType string) bool {
	if len(conf.ContentTypes) == 0 {
		return true
	}
	for _, t := range conf.ContentTypes {
		if strings.EqualFold(strings.TrimSpace(t), mediaType) {
			return true
		}
	}
	return false
}

func (conf *Config) replace(body []byte) []byte {
	for _, r := range conf.Replace {
		if r.From != "" {
			body = bytes.ReplaceAll(body, []byte(r.From), []byte(r.To))
		}
	}
	return body
}

// isJSON accepts application/json and the structured-syntax suffix +json
// (RFC 6839 3.1), e.g. application/problem+json.
func isJSON(mediaType string) bool {
	return mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")
}

// envelope returns {"<name>": body, "status": status}. The body is validated, not
// re-encoded: it is embedded byte for byte, so numbers keep their precision.
func envelope(name string, body []byte, status int) ([]byte, error) {
	var probe json.RawMessage
	if err := json.Unmarshal(body, &probe); err != nil {
		return nil, err
	}
	return json.Marshal(map[string]interface{}{name: probe, "status": status})
}

func main() {
	if err := server.StartServer(New, Version, Priority); err != nil {
		log.Fatal(err)
	}
}
