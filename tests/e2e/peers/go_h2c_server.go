// A cleartext HTTP/2 (h2c) server on Go's net/http and golang.org/x/net/http2/h2c (Debian's
// golang-golang-x-net-dev, built in GOPATH mode), for tests/e2e/test_http2.py. It speaks h2c by
// prior knowledge and by "Upgrade: h2c" (answering 101, then stream 1 over HTTP/2).
//
//	go_h2c_server ADDR
//
// It prints the protocol of every request it serves ("proto HTTP/1.1 /x" for an upgraded
// request, whose handler Go runs with the HTTP/1 request). Routes: /missing... -> 404;
// ?delay_ms=N holds the response N ms; /call?to=URL calls URL (HTTP/1.1 GET, from the
// handler's goroutine) and answers with its status.
package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: go_h2c_server ADDR")
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("proto %s %s\n", r.Proto, r.URL.Path)
		if ms, err := strconv.Atoi(r.URL.Query().Get("delay_ms")); err == nil && ms > 0 {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		code := http.StatusOK
		if strings.HasPrefix(r.URL.Path, "/missing") {
			code = http.StatusNotFound
		}
		if r.URL.Path == "/call" {
			resp, err := http.Get(r.URL.Query().Get("to"))
			if err != nil {
				code = http.StatusBadGateway
			} else {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
			}
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(code)
		fmt.Fprintf(w, "go h2c %s\n", r.URL.Path)
	})
	server := &http.Server{Addr: os.Args[1], Handler: h2c.NewHandler(handler, &http2.Server{})}
	log.Fatal(server.ListenAndServe())
}
