package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/bridge"
	"github.com/Kong/go-pdk/bridge/bridgetest"
	"github.com/Kong/go-pdk/test"
)

// logEvent runs the Log handler against a gateway that answers kong.log.serialize
// with entry. go-pdk's test.TestEnv (v0.11.2) has no kong.log.serialize, so this
// uses the scripted mock of bridgetest, which runs the same framing over a pipe and
// fails the test on any call other than the scripted one.
func logEvent(t *testing.T, c *Config, entry string) {
	t.Helper()
	conn := bridgetest.Mock(t, []bridgetest.MockStep{
		{Method: "kong.log.serialize", Ret: bridge.WrapString(entry)},
	})
	c.Log(pdk.Init(conn))
	conn.Close()
}

// flush waits until the writer of path has handled every line queued so far.
func flush(path string) {
	done := make(chan struct{})
	writerFor(path).queue <- item{flushed: done}
	<-done
}

// lines returns the lines of file once the writer of path is idle (file is path, or
// what path was renamed to).
func lines(t *testing.T, path, file string) []string {
	t.Helper()
	flush(path)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Errorf("%s does not end with a newline: %q", file, b)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

const entry = `{
  "request": {"method": "GET", "uri": "/a b", "headers": {"host": "api.test"}},
  "response": {"status": 200},
  "latencies": {"request": 3}
}`

func TestOneCompactLinePerRequest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.json")
	c := &Config{Path: path}
	logEvent(t, c, entry)
	logEvent(t, c, `{"n":2}`)
	got := lines(t, path, path)
	want := []string{`{"request":{"method":"GET","uri":"/a b","headers":{"host":"api.test"}},"response":{"status":200},"latencies":{"request":3}}`, `{"n":2}`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("file holds\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestEntryThatIsNotJSONIsNotLogged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.json")
	c := &Config{Path: path}
	logEvent(t, c, `{"truncated": `)
	logEvent(t, c, `{"ok":true}`)
	if got := lines(t, path, path); len(got) != 1 || got[0] != `{"ok":true}` {
		t.Errorf("file holds %q", got)
	}
}

func TestNoPathLogsNothing(t *testing.T) {
	// Through go-pdk's test environment: a whole request, and the handler makes
	// no PDK call at all (an unknown call would fail the test).
	env, err := test.New(t, test.Request{Method: "GET", Url: "http://api.test/", Headers: http.Header{"Host": {"api.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	env.DoHttp(&Config{})
	if env.ClientRes.Status != 200 {
		t.Errorf("status = %d", env.ClientRes.Status)
	}
}

func TestReopenFollowsARotatedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.json")
	c := &Config{Path: path, Reopen: true}
	logEvent(t, c, `{"n":1}`)
	flush(path)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	logEvent(t, c, `{"n":2}`)
	if got := lines(t, path, path); len(got) != 1 || got[0] != `{"n":2}` {
		t.Errorf("new file holds %q", got)
	}
	if got := lines(t, path, path+".1"); len(got) != 1 || got[0] != `{"n":1}` {
		t.Errorf("rotated file holds %q", got)
	}
}

func TestWithoutReopenTheDescriptorIsKept(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.json")
	c := &Config{Path: path}
	logEvent(t, c, `{"n":1}`)
	flush(path)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	logEvent(t, c, `{"n":2}`)
	if got := lines(t, path, path+".1"); len(got) != 2 {
		t.Errorf("renamed file holds %q, want both lines", got)
	}
}

func TestUnopenableFileRecovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	path := filepath.Join(dir, "access.json")
	c := &Config{Path: path}
	logEvent(t, c, `{"n":1}`) // lost: the directory does not exist yet
	flush(path)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	logEvent(t, c, `{"n":2}`)
	if got := lines(t, path, path); len(got) != 1 || got[0] != `{"n":2}` {
		t.Errorf("file holds %q", got)
	}
}

func TestFullQueueDropsInsteadOfBlocking(t *testing.T) {
	// A writer whose goroutine is not running: nothing drains its queue.
	w := &writer{path: "unused", queue: make(chan item, 2)}
	for i := 0; i < 5; i++ {
		w.offer(item{line: []byte("{}\n")})
	}
	if n := w.dropped.Load(); n != 3 {
		t.Errorf("dropped = %d, want 3", n)
	}
	if len(w.queue) != 2 {
		t.Errorf("queued = %d, want 2", len(w.queue))
	}
}
