//go:build db2

package sql

// Db2's driver wraps IBM's CLI library through cgo. Build with
//
//	CGO_CFLAGS=-I$IBM_DB_HOME/include CGO_LDFLAGS=-L$IBM_DB_HOME/lib go build -tags db2
//
// and run with $IBM_DB_HOME/lib on LD_LIBRARY_PATH (scripts/db2-build-check.sh).
import _ "github.com/ibmdb/go_ibm_db" // db2
