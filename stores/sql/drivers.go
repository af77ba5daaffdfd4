package sql

// The database/sql drivers of the dialects that build without cgo. Db2's
// needs cgo and IBM's CLI driver, so it lives behind the db2 build tag
// (driver_db2.go).
import (
	_ "github.com/go-sql-driver/mysql"  // mysql
	_ "github.com/jackc/pgx/v5/stdlib"  // postgres
	_ "github.com/microsoft/go-mssqldb" // sqlserver
	_ "github.com/sijms/go-ora/v2"      // oracle
	_ "modernc.org/sqlite"              // sqlite
)
