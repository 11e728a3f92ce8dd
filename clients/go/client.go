// Package sessionstore is the Go client of SessionStore
// (sessionstore.v1.SessionStoreService): the generated gRPC code in
// gen/sessionstore/v1, and a thin Client that sets a deadline on every
// call, speaks TLS, sends a bearer token, and returns errors that carry
// the server's google.rpc.ErrorInfo reason.
package sessionstore

import (
	"context"
	"crypto/tls"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/durationpb"

	sessionstorev1 "sessionstore/clients/go/gen/sessionstore/v1"
)

// DefaultTimeout is the deadline of a call whose context has none: a call
// without one waits forever on a stuck server, which a session check must
// never do.
const DefaultTimeout = 5 * time.Second

// Options configure Dial.
type Options struct {
	// TLS, when set, secures the connection (nil: cleartext, for a trusted
	// network only). Set RootCAs for a private CA and Certificates for
	// mutual TLS.
	TLS *tls.Config
	// Token is sent as `authorization: Bearer <token>` on every call.
	Token string
	// Timeout is the deadline of calls whose context has none; 0 means
	// DefaultTimeout.
	Timeout time.Duration
}

// Client calls SessionStoreService over one gRPC connection.
type Client struct {
	conn    *grpc.ClientConn
	stub    sessionstorev1.SessionStoreServiceClient
	timeout time.Duration
}

// bearerToken sends the token with every call.
type bearerToken struct {
	header map[string]string
	secure bool
}

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return b.header, nil
}

// RequireTransportSecurity is true over TLS and false without, so that a
// token can be used on a trusted network without TLS, as the other
// clients allow; anyone on the path can read it there.
func (b bearerToken) RequireTransportSecurity() bool { return b.secure }

// Dial connects to target ("host:port").
func Dial(target string, options Options) (*Client, error) {
	dialOptions := []grpc.DialOption{}
	if options.TLS != nil {
		dialOptions = append(dialOptions, grpc.WithTransportCredentials(credentials.NewTLS(options.TLS)))
	} else {
		dialOptions = append(dialOptions, grpc.WithInsecure())
	}
	if options.Token != "" {
		token := bearerToken{
			header: map[string]string{"authorization": "Bearer " + options.Token},
			secure: options.TLS != nil,
		}
		dialOptions = append(dialOptions, grpc.WithPerRPCCredentials(token))
	}
	conn, err := grpc.Dial(target, dialOptions...)
	if err != nil {
		return nil, err
	}
	timeout := options.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	return &Client{conn: conn, stub: sessionstorev1.NewSessionStoreServiceClient(conn), timeout: timeout}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Stub is the generated client, for calls the wrapper does not cover (the
// watch streams).
func (c *Client) Stub() sessionstorev1.SessionStoreServiceClient { return c.stub }

// withDeadline gives ctx the client's timeout unless it has a deadline.
func (c *Client) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

// Get returns the session; an *Error with NotFound when there is none.
func (c *Client) Get(ctx context.Context, userID, sessionID string) (*sessionstorev1.Session, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	res, err := c.stub.Get(ctx, &sessionstorev1.GetRequest{UserId: userID, SessionId: sessionID})
	if err != nil {
		return nil, fromRPC(err)
	}
	return res.GetSession(), nil
}

// Upsert stores the session for ttl. expectedVersion nil writes
// unconditionally, 0 inserts only, N writes over version N.
func (c *Client) Upsert(ctx context.Context, session *sessionstorev1.Session, ttl time.Duration, expectedVersion *uint64) (*sessionstorev1.Session, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	req := &sessionstorev1.UpsertRequest{Session: session, Ttl: durationpb.New(ttl), ExpectedVersion: expectedVersion}
	res, err := c.stub.Upsert(ctx, req)
	if err != nil {
		return nil, fromRPC(err)
	}
	return res.GetSession(), nil
}

// Touch keeps the session for ttl from now, without changing it.
func (c *Client) Touch(ctx context.Context, userID, sessionID string, ttl time.Duration) (*sessionstorev1.Session, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	res, err := c.stub.Touch(ctx, &sessionstorev1.TouchRequest{UserId: userID, SessionId: sessionID, Ttl: durationpb.New(ttl)})
	if err != nil {
		return nil, fromRPC(err)
	}
	return res.GetSession(), nil
}

// Delete deletes the session; false when there was none.
func (c *Client) Delete(ctx context.Context, userID, sessionID string, expectedVersion *uint64) (bool, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	res, err := c.stub.Delete(ctx, &sessionstorev1.DeleteRequest{UserId: userID, SessionId: sessionID, ExpectedVersion: expectedVersion})
	if err != nil {
		return false, fromRPC(err)
	}
	return res.GetDeleted(), nil
}

// ListPage returns one page of the user's sessions and the token of the
// next ("" on the last).
func (c *Client) ListPage(ctx context.Context, userID string, pageSize int32, pageToken string) ([]*sessionstorev1.Session, string, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	res, err := c.stub.ListByUser(ctx, &sessionstorev1.ListByUserRequest{UserId: userID, PageSize: pageSize, PageToken: pageToken})
	if err != nil {
		return nil, "", fromRPC(err)
	}
	return res.GetSessions(), res.GetNextPageToken(), nil
}

// ListAll returns every session of the user, page after page, ordered by id.
func (c *Client) ListAll(ctx context.Context, userID string, pageSize int32) ([]*sessionstorev1.Session, error) {
	var all []*sessionstorev1.Session
	token := ""
	for {
		page, next, err := c.ListPage(ctx, userID, pageSize, token)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == "" {
			return all, nil
		}
		token = next
	}
}

// DeleteByUser deletes the user's sessions but those listed; it returns
// how many were deleted.
func (c *Client) DeleteByUser(ctx context.Context, userID string, exceptSessionIDs ...string) (int64, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	res, err := c.stub.DeleteByUser(ctx, &sessionstorev1.DeleteByUserRequest{UserId: userID, ExceptSessionIds: exceptSessionIDs})
	if err != nil {
		return 0, fromRPC(err)
	}
	return res.GetDeletedCount(), nil
}

// Refresh rotates the session's refresh token: rotated is true when this
// call rotated it, false when another call had within the grace (grace 0
// means the server's default). A reused token is an *Error with
// PermissionDenied and reason REFRESH_TOKEN_REUSED; the session is then
// revoked.
func (c *Client) Refresh(ctx context.Context, userID, sessionID, presented, next string, ttl, grace time.Duration) (*sessionstorev1.Session, bool, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	req := &sessionstorev1.RefreshRequest{
		UserId:                  userID,
		SessionId:               sessionID,
		PresentedRefreshTokenId: presented,
		NewRefreshTokenId:       next,
		Ttl:                     durationpb.New(ttl),
	}
	if grace > 0 {
		req.Grace = durationpb.New(grace)
	}
	res, err := c.stub.Refresh(ctx, req)
	if err != nil {
		return nil, false, fromRPC(err)
	}
	return res.GetSession(), res.GetOutcome() == sessionstorev1.RefreshOutcome_REFRESH_OUTCOME_ROTATED, nil
}

// Version is a helper for Upsert's and Delete's expectedVersion.
func Version(v uint64) *uint64 { return &v }
