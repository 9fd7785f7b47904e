// Command api-auth is a go-pdk plugin that authenticates callers in the access
// phase, by either of two means:
//
//   - an API key in a request header (x-api-key unless configured), compared with a
//     configured list of keys, each naming the identity it stands for;
//   - an HMAC-SHA256 signature (hex, in x-signature unless configured) of
//     "<METHOD>\n<path>\n<Date header>" under a configured secret, with the Date
//     header no further than clock_skew seconds from the plugin server's clock.
//
// A request that carries neither is answered 401; one whose key or signature is
// wrong, or whose Date is stale, is answered 403. Both answers come from
// kong.response.exit with a JSON body {"message": "..."}, as Kong's own
// authentication plugins answer. An authenticated request goes on to the service
// with the caller's identity in a header (x-credential-identifier unless configured),
// which replaces whatever the client may have sent under that name.
//
// The key is tried first: a request that sends a key is judged by its key alone.
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/server"
)

const (
	Version = "1.0.0"
	// Priority 1250 is key-auth's: authentication runs before the plugins that
	// act on who the caller is (rate limiting at 910, for one).
	Priority = 1250
)

// Key is one accepted API key and the identity it authenticates.
type Key struct {
	Key      string `json:"key"`
	Identity string `json:"identity"`
}

// Config is the plugin configuration; the schema -dump prints is derived from it.
// Empty strings and zero numbers take the defaults noted on each field, since a
// go-pdk schema cannot carry defaults.
type Config struct {
	KeyHeader       string `json:"key_header"`       // default "x-api-key"
	Keys            []Key  `json:"keys"`             // accepted keys; none accepts no key
	HmacSecret      string `json:"hmac_secret"`      // empty turns signatures off
	HmacIdentity    string `json:"hmac_identity"`    // identity of signed requests; default "hmac"
	SignatureHeader string `json:"signature_header"` // default "x-signature"
	ClockSkew       int    `json:"clock_skew"`       // seconds; default 300
	IdentityHeader  string `json:"identity_header"`  // default "x-credential-identifier"
	HideCredentials bool   `json:"hide_credentials"` // strip the key or signature upstream
}

func New() interface{} {
	return &Config{}
}

// now is the clock the Date header is checked against; tests pin it.
var now = time.Now

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Access authenticates the request or answers it. Every path ends either in
// kong.response.exit (after which the connection to the gateway is closed and no
// PDK call may follow) or in setting the identity header.
func (conf *Config) Access(kong *pdk.PDK) {
	keyHeader := orDefault(conf.KeyHeader, "x-api-key")
	sigHeader := orDefault(conf.SignatureHeader, "x-signature")

	key, err := kong.Request.GetHeader(keyHeader)
	if err != nil {
		log.Printf("api-auth: reading %s: %s", keyHeader, err)
		return
	}
	if key != "" {
		identity, ok := conf.lookupKey(key)
		if !ok {
			deny(kong, http.StatusForbidden, "Invalid API key")
			return
		}
		conf.admit(kong, identity, keyHeader)
		return
	}

	sig := ""
	if conf.HmacSecret != "" {
		if sig, err = kong.Request.GetHeader(sigHeader); err != nil {
			log.Printf("api-auth: reading %s: %s", sigHeader, err)
			return
		}
	}
	if sig == "" {
		deny(kong, http.StatusUnauthorized, "No API key found in request")
		return
	}
	date, err := kong.Request.GetHeader("date")
	if err != nil {
		log.Printf("api-auth: reading date: %s", err)
		return
	}
	if date == "" {
		deny(kong, http.StatusUnauthorized, "A signed request needs a Date header")
		return
	}
	if !conf.fresh(date) {
		deny(kong, http.StatusForbidden, "Date header is not an HTTP date within the allowed clock skew")
		return
	}
	method, err := kong.Request.GetMethod()
	if err != nil {
		log.Printf("api-auth: reading the method: %s", err)
		return
	}
	path, err := kong.Request.GetPath()
	if err != nil {
		log.Printf("api-auth: reading the path: %s", err)
		return
	}
	if !conf.validSignature(sig, method, path, date) {
		deny(kong, http.StatusForbidden, "Invalid signature")
		return
	}
	conf.admit(kong, orDefault(conf.HmacIdentity, "hmac"), sigHeader)
}

// lookupKey compares the digest of key with the digest of every configured key in
// constant time, so the time taken says nothing about how much of a key, or of its
// length, matched. Empty configured keys never match; a key configured without an
// identity authenticates as "api-key".
func (conf *Config) lookupKey(key string) (string, bool) {
	sent := sha256.Sum256([]byte(key))
	identity, found := "", false
	for _, k := range conf.Keys {
		known := sha256.Sum256([]byte(k.Key))
		if subtle.ConstantTimeCompare(sent[:], known[:]) == 1 && k.Key != "" && !found {
			identity, found = k.Identity, true
		}
	}
	return orDefault(identity, "api-key"), found
}

// fresh reports whether date is an HTTP date (RFC 9110 5.6.7; http.ParseTime also
// takes the two obsolete forms) within clock_skew seconds of now, either side.
func (conf *Config) fresh(date string) bool {
	t, err := http.ParseTime(date)
	if err != nil {
		return false
	}
	skew := time.Duration(conf.ClockSkew) * time.Second
	if conf.ClockSkew <= 0 {
		skew = 300 * time.Second
	}
	d := now().Sub(t)
	return d <= skew && d >= -skew
}

// Signature is the hex HMAC-SHA256 a client sends for method, path and date. It is
// exported for clients written in Go and for the tests.
func Signature(secret, method, path, date string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strings.ToUpper(method) + "\n" + path + "\n" + date))
	return hex.EncodeToString(mac.Sum(nil))
}

func (conf *Config) validSignature(sig, method, path, date string) bool {
	got, err := hex.DecodeString(strings.TrimSpace(sig))
	if err != nil {
		return false
	}
	want, _ := hex.DecodeString(Signature(conf.HmacSecret, method, path, date))
	return hmac.Equal(got, want)
}

// admit passes the request on with the caller's identity, and without its
// credential when hide_credentials is set.
func (conf *Config) admit(kong *pdk.PDK, identity, credentialHeader string) {
	if conf.HideCredentials {
		if err := kong.ServiceRequest.ClearHeader(credentialHeader); err != nil {
			log.Printf("api-auth: clearing %s: %s", credentialHeader, err)
			return
		}
	}
	h := orDefault(conf.IdentityHeader, "x-credential-identifier")
	if err := kong.ServiceRequest.SetHeader(h, identity); err != nil {
		log.Printf("api-auth: setting %s: %s", h, err)
	}
}

// deny answers the request. RFC 9110 15.5.2: a 401 carries a WWW-Authenticate
// challenge.
func deny(kong *pdk.PDK, status int, message string) {
	body, _ := json.Marshal(map[string]string{"message": message})
	headers := map[string][]string{"Content-Type": {"application/json; charset=utf-8"}}
	if status == http.StatusUnauthorized {
		headers["WWW-Authenticate"] = []string{`Key realm="api-auth"`}
	}
	kong.Response.Exit(status, body, headers)
}

func main() {
	if err := server.StartServer(New, Version, Priority); err != nil {
		log.Fatal(err)
	}
}
