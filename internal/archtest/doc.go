// Package archtest holds the import-graph test that enforces the security
// rules of README.md ("The import graph states the security rules"). It has
// no code of its own outside the test.
package archtest
