// Command hello is the smallest useful go-pdk plugin, in the shape of go-pdk's own
// go-hello example: during access it reads one request header (host, unless the
// configuration names another) and adds a response header greeting the caller:
//
//	x-hello-from-go: Go says <message> to <header value>
//
// The binary is a plugin server hosting one plugin. Its name is the plugin's
// name, so build it as "hello" (see README.md).
package main

import (
	"fmt"
	"log"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/server"
)

// Version and Priority are what -dump reports. Priority 1 runs the plugin after
// every bundled plugin in the access phase, as go-hello does.
const (
	Version  = "0.2"
	Priority = 1
)

// Config is the plugin configuration. go-pdk derives the schema that -dump prints
// from this struct (string fields, named by their json tags) and decodes each
// instance's configuration into a fresh one. Unset fields arrive as null and stay
// empty; the defaults live in the handler because a go-pdk schema cannot carry them.
type Config struct {
	Message string `json:"message"` // default "hello"
	Header  string `json:"header"`  // request header to greet; default "host"
}

// New is the constructor go-pdk calls once for the schema and once per instance.
func New() interface{} {
	return &Config{}
}

// Access sets the greeting. A header that is absent greets the empty string, as
// go-hello does: kong.request.get_header answers "" for a missing header.
func (conf *Config) Access(kong *pdk.PDK) {
	name := conf.Header
	if name == "" {
		name = "host"
	}
	message := conf.Message
	if message == "" {
		message = "hello"
	}
	value, err := kong.Request.GetHeader(name)
	if err != nil {
		// Only a broken connection to the gateway gets here; the event is lost
		// either way, so say so in the plugin server's log and stop.
		log.Printf("hello: reading request header %q: %s", name, err)
		return
	}
	if err := kong.Response.SetHeader("x-hello-from-go", fmt.Sprintf("Go says %s to %s", message, value)); err != nil {
		log.Printf("hello: setting x-hello-from-go: %s", err)
	}
}

func main() {
	if err := server.StartServer(New, Version, Priority); err != nil {
		log.Fatal(err)
	}
}
