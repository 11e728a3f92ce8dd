// Command scenario runs the shared client scenario with this module's
// Client against a live server: insert-only Upsert, Get, a CAS conflict
// (ABORTED, reason VERSION_MISMATCH), Touch, ListByUser over pages,
// DeleteByUser with an exception, NOT_FOUND. It prints one "ok <step>" line
// each and exits 0, or the failed step and exits 1; never ids or tokens.
//
//	scenario -target 127.0.0.1:50051 [-ca-file ca.crt] [-token-file token]
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	sessionstore "sessionstore/clients/go"
	sessionstorev1 "sessionstore/clients/go/gen/sessionstore/v1"
)

func main() {
	target := flag.String("target", "", "host:port of the server")
	caFile := flag.String("ca-file", "", "PEM CA the server's certificate must chain to (TLS)")
	tokenFile := flag.String("token-file", "", "file holding the bearer token")
	flag.Parse()
	if err := run(*target, *caFile, *tokenFile); err != nil {
		fmt.Fprintln(os.Stderr, "FAILED", err)
		os.Exit(1)
	}
	fmt.Println("ok scenario passed")
}

func run(target, caFile, tokenFile string) error {
	options := sessionstore.Options{Timeout: 5 * time.Second}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("no certificate in the CA file")
		}
		options.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if tokenFile != "" {
		token, err := os.ReadFile(tokenFile)
		if err != nil {
			return err
		}
		options.Token = strings.TrimSpace(string(token))
	}
	client, err := sessionstore.Dial(target, options)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx := context.Background()
	random := make([]byte, 8)
	if _, err := rand.Read(random); err != nil {
		return err
	}
	user := "user-" + hex.EncodeToString(random)
	step := func(name string, ok bool) error {
		if !ok {
			return fmt.Errorf("%s", name)
		}
		fmt.Println("ok " + name)
		return nil
	}
	failsWith := func(err error, code codes.Code, name string) error {
		if sessionstore.CodeOf(err) != code {
			return fmt.Errorf("%s: got %v", name, sessionstore.CodeOf(err))
		}
		return step(fmt.Sprintf("%s reason=%s", name, sessionstore.ReasonOf(err)), true)
	}

	session := &sessionstorev1.Session{Id: "s1", UserId: user, RefreshTokenId: "rt-1"}
	stored, err := client.Upsert(ctx, session, time.Minute, sessionstore.Version(0))
	if err != nil {
		return err
	}
	if err := step("insert-only upsert version=1", stored.GetVersion() == 1); err != nil {
		return err
	}
	_, err = client.Upsert(ctx, session, time.Minute, sessionstore.Version(0))
	if err := failsWith(err, codes.AlreadyExists, "insert-only upsert again"); err != nil {
		return err
	}
	got, err := client.Get(ctx, user, "s1")
	if err != nil {
		return err
	}
	if err := step("get", got.GetVersion() == 1); err != nil {
		return err
	}
	if _, err := client.Upsert(ctx, session, time.Minute, sessionstore.Version(1)); err != nil {
		return err
	}
	_, err = client.Upsert(ctx, session, time.Minute, sessionstore.Version(1))
	if err := failsWith(err, codes.Aborted, "stale CAS"); err != nil {
		return err
	}
	touched, err := client.Touch(ctx, user, "s1", 2*time.Minute)
	if err != nil {
		return err
	}
	if err := step("touch keeps the version", touched.GetVersion() == 2); err != nil {
		return err
	}
	for i := 2; i <= 5; i++ {
		if _, err := client.Upsert(ctx, &sessionstorev1.Session{Id: fmt.Sprintf("s%d", i), UserId: user}, time.Minute, nil); err != nil {
			return err
		}
	}
	pages, token, ids := 0, "", []string{}
	for {
		sessions, next, err := client.ListPage(ctx, user, 2, token)
		if err != nil {
			return err
		}
		pages++
		for _, s := range sessions {
			ids = append(ids, s.GetId())
		}
		if next == "" {
			break
		}
		token = next
	}
	if err := step(fmt.Sprintf("list pages=%d sessions=%d", pages, len(ids)), strings.Join(ids, ",") == "s1,s2,s3,s4,s5"); err != nil {
		return err
	}
	all, err := client.ListAll(ctx, user, 2)
	if err != nil {
		return err
	}
	if err := step("list all", len(all) == 5); err != nil {
		return err
	}
	deleted, err := client.DeleteByUser(ctx, user, "s1")
	if err != nil {
		return err
	}
	if err := step(fmt.Sprintf("delete-by-user deleted=%d", deleted), deleted == 4); err != nil {
		return err
	}
	kept, err := client.ListAll(ctx, user, 0)
	if err != nil {
		return err
	}
	if err := step("kept", len(kept) == 1 && kept[0].GetId() == "s1"); err != nil {
		return err
	}
	_, err = client.Get(ctx, user, "s2")
	return failsWith(err, codes.NotFound, "get deleted")
}
