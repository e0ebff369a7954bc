// Package certs loads, checks and hot-reloads certificate chains, and keeps the
// local development CA that the internal SSL module issues certificates from.
package certs
