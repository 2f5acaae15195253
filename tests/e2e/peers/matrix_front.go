// A front service of the parenting matrix (tests/e2e/test_parenting.py), untouched Go net/http.
// Built at test time with the Debian toolchain, offline (GOPROXY=off GO111MODULE=off), stripped
// and not.
//
//	matrix_front front PORT BACKEND_BASE_URL [SECOND_BACKEND_BASE_URL]
//	matrix_front backend PORT
//
// front: GET /a/<id> starts a goroutine, which starts another; the two call their backends at
// the same time (GET /b/<rev>-1 from the grandchild, on the second backend when given, and
// /b/<rev>-2 from the child, <rev> the id reversed) with http.Get's keep-alive client, and the
// handler answers 200 when both did. The
// client writes each request from the transport's own write goroutine, and the outgoing paths
// carry no forwarded id: only goroutine context links them to the request.
// backend: answers every request 200 "ok".
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
)

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

func get(url string) bool {
	r, err := http.Get(url)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	return r.StatusCode == 200
}

func main() {
	mode, port := os.Args[1], os.Args[2]
	http.DefaultTransport.(*http.Transport).MaxIdleConnsPerHost = 64
	if mode == "backend" {
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "ok\n")
		})
	} else {
		backend, second := os.Args[3], os.Args[3]
		if len(os.Args) > 4 {
			second = os.Args[4]
		}
		http.HandleFunc("/a/", func(w http.ResponseWriter, r *http.Request) {
			rev := reverse(strings.TrimPrefix(r.URL.Path, "/a/"))
			var wg sync.WaitGroup
			var mu sync.Mutex
			ok := true
			call := func(base, suffix string) {
				good := get(base + "/b/" + rev + suffix)
				mu.Lock()
				ok = ok && good
				mu.Unlock()
				wg.Done()
			}
			wg.Add(2)
			go func() {
				go call(second, "-1")
				call(backend, "-2")
			}()
			wg.Wait()
			if !ok {
				w.WriteHeader(http.StatusBadGateway)
			}
			io.WriteString(w, "ok\n")
		})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("{\"listening\": %s}\n", port)
	http.Serve(ln, nil)
}
