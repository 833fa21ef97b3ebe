// Package sessions will rebuild the application's login sessions from the
// same replication stream (session tables are just more published tables),
// for correlate to attribute changes to them.
package sessions
