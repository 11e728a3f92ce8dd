package sessionstore

import (
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of SessionStore's errors.
const ErrorDomain = "sessionstore"

// Error is a failed call: its status code and message, and the reason and
// metadata of the google.rpc.ErrorInfo the server sends with every error
// (the root README lists the reasons). Branch on Code, or on Reason for
// the finer cases (VERSION_MISMATCH, REFRESH_TOKEN_REUSED,
// WRITE_NOT_REPLICATED...).
type Error struct {
	Code     codes.Code
	Message  string
	Reason   string
	Metadata map[string]string
	cause    error
}

func (e *Error) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("sessionstore: %s: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("sessionstore: %s: %s (%s)", e.Code, e.Message, e.Reason)
}

// Unwrap returns the gRPC error the Error was made from.
func (e *Error) Unwrap() error { return e.cause }

// fromRPC turns a failed call's error into an *Error, reading the
// ErrorInfo from its status details.
func fromRPC(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return &Error{Code: codes.Unknown, Message: err.Error(), cause: err}
	}
	out := &Error{Code: st.Code(), Message: st.Message(), cause: err}
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			out.Reason = info.GetReason()
			out.Metadata = info.GetMetadata()
		}
	}
	return out
}

// CodeOf is the status code of an error a Client returned (codes.OK for
// nil, codes.Unknown for an error from elsewhere).
func CodeOf(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if e, ok := err.(*Error); ok {
		return e.Code
	}
	return codes.Unknown
}

// ReasonOf is the ErrorInfo reason of an error a Client returned, or "".
func ReasonOf(err error) string {
	if e, ok := err.(*Error); ok {
		return e.Reason
	}
	return ""
}
