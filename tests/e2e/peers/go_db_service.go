// A Go web service that calls PostgreSQL and Redis, untouched by tracing, for
// tests/e2e/test_db_spans.py. Standard library only (built at test time offline, like the other
// Go peers): its database clients are small wire-protocol clients over net.Conn with a
// connection pool each, written from the goroutine that makes the call, as Go drivers do
// (database/sql drivers, go-redis).
//
//	go_db_service PORT PG_PORT REDIS_PORT
//
// GET /item/<id>: the handler goroutine asks Redis (GET item:<id>) while a goroutine it started
// asks PostgreSQL (SELECT <id> AS i<id>: the alias names the request in the sanitised text);
// answers 200 when both answered. Only goroutine context ties the queries to their request.
// Prints {"listening": PORT} once serving.
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
)

type conn struct {
	c net.Conn
	r *bufio.Reader
}

// pool: idle connections, dialed on demand (so concurrent requests use several).
type pool struct {
	idle chan *conn
	dial func() (*conn, error)
}

func (p *pool) get() (*conn, error) {
	select {
	case c := <-p.idle:
		return c, nil
	default:
		return p.dial()
	}
}

func (p *pool) put(c *conn) {
	select {
	case p.idle <- c:
	default:
		c.c.Close()
	}
}

func dial(port string) (*conn, error) {
	c, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		return nil, err
	}
	return &conn{c, bufio.NewReader(c)}, nil
}

// ---- PostgreSQL: protocol v3, trust authentication, simple query ----------------------------

func pgMessage(r *bufio.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(h[1:])-4)
	_, err := io.ReadFull(r, body)
	return h[0], body, err
}

// pgUntilReady reads up to ReadyForQuery; returns the first column of the first row.
func pgUntilReady(c *conn) (string, error) {
	value := ""
	var failed error
	for {
		t, body, err := pgMessage(c.r)
		if err != nil {
			return "", err
		}
		switch t {
		case 'D':
			if value == "" && len(body) >= 6 {
				n := int(int32(binary.BigEndian.Uint32(body[2:6])))
				if n > 0 && 6+n <= len(body) {
					value = string(body[6 : 6+n])
				}
			}
		case 'E':
			failed = errors.New("postgres error")
		case 'Z':
			return value, failed
		}
	}
}

func pgDial(port string) (*conn, error) {
	c, err := dial(port)
	if err != nil {
		return nil, err
	}
	params := "user\x00postgres\x00database\x00postgres\x00\x00"
	msg := make([]byte, 8, 8+len(params))
	binary.BigEndian.PutUint32(msg[0:], uint32(8+len(params)))
	binary.BigEndian.PutUint32(msg[4:], 196608) // 3.0
	if _, err := c.c.Write(append(msg, params...)); err != nil {
		return nil, err
	}
	if _, err := pgUntilReady(c); err != nil {
		return nil, err
	}
	return c, nil
}

func pgQuery(p *pool, sql string) (string, error) {
	c, err := p.get()
	if err != nil {
		return "", err
	}
	msg := []byte{'Q', 0, 0, 0, 0}
	binary.BigEndian.PutUint32(msg[1:], uint32(4+len(sql)+1))
	msg = append(append(msg, sql...), 0)
	if _, err := c.c.Write(msg); err != nil {
		c.c.Close()
		return "", err
	}
	v, err := pgUntilReady(c)
	p.put(c)
	return v, err
}

// ---- Redis: RESP2 commands, one simple or bulk reply -----------------------------------------

func redisCommand(p *pool, args ...string) (string, error) {
	c, err := p.get()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c.c, b.String()); err != nil {
		c.c.Close()
		return "", err
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.c.Close()
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	value := ""
	switch {
	case strings.HasPrefix(line, "$"):
		n, _ := strconv.Atoi(line[1:])
		if n >= 0 {
			buf := make([]byte, n+2)
			if _, err := io.ReadFull(c.r, buf); err != nil {
				c.c.Close()
				return "", err
			}
			value = string(buf[:n])
		}
	case strings.HasPrefix(line, "-"):
		err = errors.New(line)
	default:
		value = line[1:]
	}
	p.put(c)
	return value, err
}

func main() {
	port, pgPort, redisPort := os.Args[1], os.Args[2], os.Args[3]
	pg := &pool{make(chan *conn, 32), func() (*conn, error) { return pgDial(pgPort) }}
	cache := &pool{make(chan *conn, 32), func() (*conn, error) { return dial(redisPort) }}
	http.HandleFunc("/item/", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/item/"))
		if err != nil {
			http.Error(w, "bad id", http.StatusBadRequest)
			return
		}
		var wg sync.WaitGroup
		var row string
		var pgErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			row, pgErr = pgQuery(pg, fmt.Sprintf("SELECT %d AS i%d", id, id))
		}()
		_, cacheErr := redisCommand(cache, "GET", fmt.Sprintf("item:%d", id))
		wg.Wait()
		if pgErr != nil || cacheErr != nil {
			http.Error(w, fmt.Sprint(pgErr, cacheErr), http.StatusBadGateway)
			return
		}
		io.WriteString(w, row+"\n")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("{\"listening\": %s}\n", port)
	http.Serve(ln, nil)
}
