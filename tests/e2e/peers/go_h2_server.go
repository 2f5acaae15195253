// An HTTPS server on Go's crypto/tls and net/http with its defaults, so HTTP/2 is negotiated
// (ALPN h2) with any client offering it, for tests/e2e/test_http2.py.
//
//	go_h2_server ADDR CERT KEY
//
// It prints the protocol of every request it serves ("proto HTTP/2.0"), so the test can tell h2
// was really spoken; ?delay_ms=N holds the response N ms.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) != 4 {
		log.Fatal("usage: go_h2_server ADDR CERT KEY")
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
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(code)
		fmt.Fprintf(w, "go h2 %s\n", r.URL.Path)
	})
	log.Fatal((&http.Server{Addr: os.Args[1], Handler: handler}).ListenAndServeTLS(os.Args[2], os.Args[3]))
}
