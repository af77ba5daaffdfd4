"""Parses the SQL store's statements for SQL Server, Oracle and Db2 with
sqlfluff, exactly as the engine writes them (dumped by
`go test ./stores/sql -run TestDumpStatements -dump=DIR`), including the
clock expressions the JDBC emulators cannot evaluate. Started by
scripts/dialects.sh:

    python parse.py DIR LIMIT...

LIMIT is sqlfluff-<dialect>:<statement name>, a declared parser limit.
Prints PASS, FAIL and LIMIT lines and, last, "sqlfluff: N passed, M failed,
L limits".
"""
import sys
from pathlib import Path

import sqlfluff
from sqlfluff.api.simple import APIParsingError
from sqlfluff.core import FluffConfig

# The engine's dialects: sqlfluff's name, the drivers' parameter style
# (tsql reads go-mssqldb's @p1 as a variable), and how to wrap the clock
# expression in a statement of its own.
DIALECTS = {
    "sqlserver": ("tsql", None, "SELECT {}"),
    "oracle": ("oracle", "numeric_colon", "SELECT {} FROM DUAL"),
    "db2": ("db2", "question_mark", "SELECT {} FROM SYSIBM.SYSDUMMY1"),
}


def config(fluff, style):
    core = {"dialect": fluff}
    if style is None:
        return FluffConfig(configs={"core": core})
    core["templater"] = "placeholder"
    return FluffConfig(configs={"core": core, "templater": {"placeholder": {"param_style": style}}})


def main():
    out_dir = Path(sys.argv[1])
    declared = set(sys.argv[2:])
    used = set()
    passed = failed = limits = 0
    for name, (fluff, style, wrap) in DIALECTS.items():
        target = "sqlfluff-" + name
        cfg = config(fluff, style)
        for line in (out_dir / (name + ".tsv")).read_text().splitlines():
            kind, stmt, _table, _cols, sql = line.split("\t", 4)
            if kind == "clock":
                sql = wrap.format(sql)
            check = f"parse {kind} {stmt}"
            try:
                sqlfluff.parse(sql, config=cfg)
                print(f"PASS  {target}  {check}")
                passed += 1
            except APIParsingError as e:
                why = str(e).splitlines()[0] if str(e) else "unparsable"
                key = f"{target}:{stmt}"
                if key in declared:
                    used.add(key)
                    print(f"LIMIT {target}  {check}: sqlfluff {sqlfluff.__version__} cannot parse it ({why}): {sql}")
                    limits += 1
                else:
                    print(f"FAIL  {target}  {check}: {why}: {sql}")
                    failed += 1
    for key in sorted(declared - used):
        print(f"NOTE declared limit {key} was not needed: remove it from scripts/dialects.sh")
    print(f"sqlfluff: {passed} passed, {failed} failed, {limits} limits")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
