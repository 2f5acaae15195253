// An HTTPS server on Go's crypto/tls and net/http, for tests/e2e/test_go_tls.py.
//
//	go_https_server ADDR CERT KEY
//
// HTTP/2 is switched off (an empty TLSNextProto map): the agent parses HTTP/1.x only, and Go
// would otherwise negotiate h2 with any client offering it.
package main

import (
	"crypto/tls"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
)

func main() {
	if len(os.Args) != 4 {
		log.Fatal("usage: go_https_server ADDR CERT KEY")
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusOK
		if strings.HasPrefix(r.URL.Path, "/missing") {
			code = http.StatusNotFound
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(code)
		fmt.Fprintf(w, "go %s\n", r.URL.Path)
	})
	srv := &http.Server{
		Addr:         os.Args[1],
		Handler:      handler,
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	log.Fatal(srv.ListenAndServeTLS(os.Args[2], os.Args[3]))
}
