// Command json-log is a go-pdk plugin that appends one JSON line per request, Kong's
// kong.log.serialize() document, to a file named in its configuration: Kong's
// file-log, reimplemented the way go-pdk's go-log example does it, with a queue
// that never makes the event wait.
//
// Threads and lifetimes. The Log handler runs in the connection's goroutine while
// the gateway waits for the event to end; it only takes the serialized entry, checks
// it is JSON, and offers the line to the writer of its path without blocking: when
// the writer's queue (4096 lines) is full the line is dropped and counted, and the
// writer reports the count in the plugin server's log when it catches up. One writer
// goroutine per path owns that path's file descriptor; writers live as long as the
// process (there is one per distinct path ever configured), and never touch the PDK,
// which is only valid inside a handler.
//
// A file that cannot be opened (a missing directory, permissions) loses its lines
// until it can; the failure is logged once per episode, and every line tries again.
// With reopen set, the file is closed and reopened before each line, for log
// rotation by renaming.
package main

import (
	"bytes"
	"encoding/json"
	"log"
	"os"
	"sync"
	"sync/atomic"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/server"
)

const (
	Version = "1.0.0"
	// Priority 9 is file-log's: logging plugins run after everything else.
	Priority = 9
	// queueLen bounds the lines waiting for one writer, and so the memory a slow
	// disk can hold up.
	queueLen = 4096
)

// Config is the plugin configuration; -dump prints the schema derived from it.
type Config struct {
	Path   string `json:"path"`   // file to append to; required
	Reopen bool   `json:"reopen"` // close and reopen the file before each line
}

func New() interface{} {
	return &Config{}
}

// item is one queued line, or (flushed != nil) a request to signal once every line
// queued before it has been written.
type item struct {
	line    []byte
	reopen  bool
	flushed chan struct{}
}

// writer owns one path's file and the queue in front of it.
type writer struct {
	path    string
	queue   chan item
	dropped atomic.Uint64 // lines refused since the writer last reported
}

var (
	writersMu sync.Mutex
	writers   = map[string]*writer{}
)

// writerFor returns the writer of path, starting it on first use.
func writerFor(path string) *writer {
	writersMu.Lock()
	defer writersMu.Unlock()
	w := writers[path]
	if w == nil {
		w = &writer{path: path, queue: make(chan item, queueLen)}
		writers[path] = w
		go w.run()
	}
	return w
}

// Log queues the request's entry. Kong serves kong.log.serialize in this phase from
// a snapshot taken when the response was sent, so the entry is complete.
func (conf *Config) Log(kong *pdk.PDK) {
	if conf.Path == "" {
		log.Printf("json-log: config.path is empty: set it to the file to log to")
		return
	}
	entry, err := kong.Log.Serialize()
	if err != nil {
		log.Printf("json-log: kong.log.serialize: %s", err)
		return
	}
	// One line per entry, whatever whitespace the gateway used.
	var line bytes.Buffer
	if err := json.Compact(&line, []byte(entry)); err != nil {
		log.Printf("json-log: kong.log.serialize returned something that is not JSON (%s); not logged", err)
		return
	}
	line.WriteByte('\n')
	writerFor(conf.Path).offer(item{line: line.Bytes(), reopen: conf.Reopen})
}

// offer queues it if there is room, and otherwise counts it as dropped: the
// request's event never waits for the disk.
func (w *writer) offer(it item) {
	select {
	case w.queue <- it:
	default:
		w.dropped.Add(1)
	}
}

// run is the writer goroutine. Each line is one write(2) on an O_APPEND descriptor,
// so lines from this process never interleave; the file is opened lazily and
// dropped after any write error, to be opened again for the next line.
func (w *writer) run() {
	var f *os.File
	failing := false
	for it := range w.queue {
		if it.flushed != nil {
			close(it.flushed)
			continue
		}
		if n := w.dropped.Swap(0); n > 0 {
			log.Printf("json-log: %s: %d entries dropped: more than %d were waiting to be written", w.path, n, queueLen)
		}
		if f != nil && it.reopen {
			f.Close()
			f = nil
		}
		if f == nil {
			var err error
			if f, err = os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
				if !failing {
					log.Printf("json-log: %s; entries are lost until it can be opened", err)
					failing = true
				}
				f = nil
				continue
			}
			failing = false
		}
		if _, err := f.Write(it.line); err != nil {
			log.Printf("json-log: writing %s: %s", w.path, err)
			f.Close()
			f = nil
		}
	}
}

func main() {
	if err := server.StartServer(New, Version, Priority); err != nil {
		log.Fatal(err)
	}
}
