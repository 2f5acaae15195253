// An HTTPS client on Go's crypto/tls and net/http, for tests/e2e/test_go_tls.py: GETs each URL
// in turn on one keep-alive connection, prints each status, and exits.
//
//	go_https_client [-wait] URL...
//
// -wait holds the first request until a line arrives on stdin (see the test for why). HTTP/1.1 only (an empty
// TLSNextProto map), certificates not verified (the test's are self-signed).
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	wait := flag.Bool("wait", false, "read a line from stdin before the first request")
	flag.Parse()
	if *wait {
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	client := &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
			TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
		},
		Timeout: 10 * time.Second,
	}
	for _, url := range flag.Args() {
		resp, err := client.Get(url)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
	}
}
