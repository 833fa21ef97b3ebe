// Package e2e holds cdcaudit's end-to-end tests: the real binary and the
// in-process pipeline against a throwaway PostgreSQL (internal/pgtest),
// checked against what the server itself says happened (test_decoding, the
// source tables, the slot's confirmed position). It has no non-test code.
package e2e
