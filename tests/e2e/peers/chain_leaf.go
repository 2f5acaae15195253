// The last hop of the injection chain (tests/e2e/test_inject.py), an untouched Go net/http
// service. Built at test time with the Debian toolchain, offline (GOPROXY=off GO111MODULE=off).
//
//	chain_leaf PORT [CERT KEY]
//
// Answers every request with JSON naming the traceparent values it received, so the test can
// check what arrived on the wire. With CERT and KEY (PEM files) it serves HTTPS.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	port := os.Args[1]
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		values := append([]string{}, r.Header.Values("Traceparent")...)
		body, _ := json.Marshal(map[string]interface{}{
			"service":     "go",
			"path":        r.URL.Path,
			"traceparent": values,
		})
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	ln, err := net.Listen("tcp", "0.0.0.0:"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("{\"listening\": %s}\n", port)
	if len(os.Args) > 3 {
		http.ServeTLS(ln, nil, os.Args[2], os.Args[3])
		return
	}
	http.Serve(ln, nil)
}
