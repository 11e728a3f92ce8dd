// Command go-peer is the benchmark's Go yardstick: a minimal grpc-go server
// doing the service's Redis work for Get and Upsert (the same keys, the
// same Lua scripts run by EVALSHA, the same stored record format) with the
// redigo client, so that the service's CPU per RPC can be set against what
// a compiled server spends on the same calls. bench/processes.ts builds it
// offline against Debian's Go packages and runs it with GOMAXPROCS=1, one
// core, like Node's one event loop.
//
// Configuration, as the other bench servers take it: REDIS_URL, HOST and
// PORT (0: any free port) from the environment; -scripts names the
// directory holding get.lua and upsert.lua, the scripts exactly as the
// service registers them (settings prefix, common.lua, the script itself),
// written there by the bench from the service's own sources. It prints
// {"port":N} on stdout once it listens, and stops on SIGTERM.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/gomodule/redigo/redis"
	"google.golang.org/grpc"
)

// The peer's limits, the service's defaults: MAX_TTL_SECONDS (400 days)
// and MAX_PAYLOAD_BYTES, as the grpc-js peer sets them too.
const (
	maxTTLSeconds   = 34_560_000
	maxPayloadBytes = 65_536
)

// redisTimeout bounds connecting and each command, as the service's
// REDIS_COMMAND_TIMEOUT (1 s) does.
const redisTimeout = time.Second

// poolSize is the number of Redis connections. The service sends every
// command on one ioredis connection without waiting for earlier replies;
// redigo has no such multiplexing, so each call in flight holds a
// connection for its round trip. 16 connections carry the bench's 32 calls
// in flight with Redis kept busy (a call spends most of its time in the
// handler, not waiting on Redis), and calls beyond it wait for a free one
// (Wait) instead of opening more sockets for one core to poll.
const poolSize = 16

func main() {
	scripts := flag.String("scripts", "", "directory holding get.lua and upsert.lua")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("go-peer: ")
	if *scripts == "" {
		log.Fatal("-scripts is required")
	}
	getSource, err := os.ReadFile(filepath.Join(*scripts, "get.lua"))
	if err != nil {
		log.Fatal(err)
	}
	upsertSource, err := os.ReadFile(filepath.Join(*scripts, "upsert.lua"))
	if err != nil {
		log.Fatal(err)
	}

	redisURL := envOr("REDIS_URL", "redis://127.0.0.1:6379")
	pool := &redis.Pool{
		MaxIdle:   poolSize,
		MaxActive: poolSize,
		Wait:      true,
		Dial: func() (redis.Conn, error) {
			return redis.DialURL(redisURL,
				redis.DialConnectTimeout(redisTimeout),
				redis.DialReadTimeout(redisTimeout),
				redis.DialWriteTimeout(redisTimeout))
		},
	}
	store := &peer{
		pool:   pool,
		get:    redis.NewScript(1, string(getSource)),
		upsert: redis.NewScript(4, string(upsertSource)),
	}

	listener, err := net.Listen("tcp", net.JoinHostPort(envOr("HOST", "127.0.0.1"), envOr("PORT", "0")))
	if err != nil {
		log.Fatal(err)
	}
	server := grpc.NewServer(grpc.CustomCodec(rawCodec{}))
	server.RegisterService(&serviceDesc, store)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		// Like the grpc-js peer: calls in flight are cut, not drained.
		server.Stop()
	}()

	fmt.Printf("{\"port\":%d}\n", listener.Addr().(*net.TCPAddr).Port)
	if err := server.Serve(listener); err != nil {
		log.Fatal(err)
	}
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
}

func envOr(name, fallback string) string {
	if value, ok := os.LookupEnv(name); ok {
		return value
	}
	return fallback
}
