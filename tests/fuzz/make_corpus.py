#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus, tests/fuzz/corpus/<target>/<name>: small valid inputs from which
libFuzzer mutates. Deterministic, so the committed files are this script's output:
    python3 tests/fuzz/make_corpus.py
"""
import base64
import hashlib
import hmac
import pathlib
import shutil
import struct

HERE = pathlib.Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
CONFIG_SEEDS = HERE.parent / "data" / "config" / "valid"


def message(tag: bytes, body: bytes) -> bytes:
    return tag + struct.pack(">I", len(body) + 4) + body


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def startup(params, version=196608) -> bytes:
    body = struct.pack(">I", version) + b"".join(cstr(k) + cstr(v) for k, v in params) + b"\0"
    return struct.pack(">I", len(body) + 4) + body


def request_code(code: int, extra: bytes = b"") -> bytes:
    return struct.pack(">II", 8 + len(extra), code) + extra


EXTENDED = (message(b"P", cstr("s1") + cstr("SELECT $1::int") + struct.pack(">hI", 1, 23))
            + message(b"B", cstr("") + cstr("s1") + struct.pack(">hhh", 0, 1, 1) + struct.pack(">I", 1) + b"7"
                      + struct.pack(">h", 0))
            + message(b"D", b"P" + cstr("")) + message(b"E", cstr("") + struct.pack(">I", 0))
            + message(b"C", b"S" + cstr("s1")) + message(b"S", b""))

FRONTEND = {
    "query": message(b"Q", cstr("SELECT 1")),
    "extended": EXTENDED,
    "flush_batch": message(b"P", cstr("") + cstr("SELECT 2") + struct.pack(">h", 0)) + message(b"H", b""),
    "password": message(b"p", cstr("md5" + "0" * 32)),
    "sasl_initial": message(b"p", cstr("SCRAM-SHA-256") + struct.pack(">i", 3) + b"n,,"),
    "function_call": message(b"F", struct.pack(">IhhIh", 1598, 0, 1, 1, 0) + b"x"),
    "terminate": message(b"X", b""),
}

BACKEND = {
    "auth_ok": message(b"R", struct.pack(">I", 0)),
    "auth_md5": message(b"R", struct.pack(">I", 5) + b"salt"),
    "auth_sasl": message(b"R", struct.pack(">I", 10) + cstr("SCRAM-SHA-256-PLUS") + cstr("SCRAM-SHA-256") + b"\0"),
    "auth_continue": message(b"R", struct.pack(">I", 11) + b"r=abc,s=c2FsdA==,i=4096"),
    "parameter": message(b"S", cstr("TimeZone") + cstr("UTC")),
    "key": message(b"K", struct.pack(">ii", 4242, -7)),
    "ready": message(b"Z", b"T"),
    "complete": message(b"C", cstr("INSERT 0 1")),
    "error": message(b"E", cstr("SERROR") + cstr("VERROR") + cstr("C0A000") + cstr("Mcached plan must not change")
                     + cstr("RRevalidateCachedQuery") + b"\0"),
    "notice": message(b"N", cstr("SNOTICE") + cstr("C00000") + cstr("Mhello") + cstr("Ddetail") + b"\0"),
}

STARTUP = {
    "login": b"\0" + startup([("user", "app"), ("database", "app"), ("application_name", "psql")]),
    "negotiate": b"\0" + startup([("user", "app"), ("_pq_.compression", "on")], version=196609),
    "options": b"\0" + startup([("user", "app"), ("options", "-c search_path=x"), ("user", "other")]),
    "protocol2": b"\0" + startup([("user", "app")], version=131072),
    "ssl_then_login": b"\0" + request_code(80877103) + startup([("user", "app")]),
    "gss_twice": b"\3" + request_code(80877104) + request_code(80877104),
    "cancel": b"\0" + request_code(80877102, struct.pack(">ii", 1234, 5678)),
}

SQL = {
    "select": "SELECT a, b FROM t WHERE id = $1",
    "insert": "INSERT INTO t VALUES (1, 'x''y') RETURNING id",
    "comments": "/* pgmux:primary */ SELECT 1 -- trailing\n/* nested /* comment */ */",
    "dollar": "SELECT $tag$ body; $$ $tag$, $$x$$",
    "escape": "SELECT E'\\n\\'', U&'\\0041', B'101', X'ff', \"Quoted \"\"id\"\"\"",
    "multi": "BEGIN READ ONLY; SELECT nextval('s'); COMMIT;",
    "set": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; RESET ALL; SET TimeZone TO 'UTC'",
    "prepare": "PREPARE q1(int) AS SELECT $1; EXECUTE q1(2); DEALLOCATE PREPARE ALL",
    "cte": "WITH w AS (UPDATE t SET x = 1 RETURNING *) SELECT * FROM w",
    "functions": "SELECT pg_advisory_lock(1), set_config('a.b', 'c', false), audit_write(1.5e3)",
    "ddl": "CREATE TEMP TABLE tt (id int); LISTEN ch; DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    "explain": "EXPLAIN (ANALYZE) EXECUTE q1; COPY t FROM STDIN; DO $$BEGIN END$$",
}

CLIENT_NONCE = "fuzzclientnonce"
SERVER_NONCE = "fuzzservernonce"
SALT = b"fuzz-salt-16byte"


def scram_keys(password: str):
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), SALT, 4096)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return client_key, hashlib.sha256(client_key).digest(), server_key


def scram_server_seed() -> str:
    """A whole valid exchange against scram_server_fuzz's secret (password "app")."""
    client_first_bare = "n=,r=" + CLIENT_NONCE
    nonce = CLIENT_NONCE + SERVER_NONCE
    server_first = f"r={nonce},s={base64.b64encode(SALT).decode()},i=4096"
    without_proof = f"c=biws,r={nonce}"
    auth = f"{client_first_bare},{server_first},{without_proof}".encode()
    client_key, stored_key, _ = scram_keys("app")
    signature = hmac.new(stored_key, auth, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    return f"n,,{client_first_bare}\n--\n{without_proof},p={base64.b64encode(proof).decode()}"


SCRAM_SERVER = {
    "exchange": scram_server_seed(),
    "plus": "p=tls-server-end-point,,n=,r=" + CLIENT_NONCE + "\n--\nc=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=x,p=AA==",
    "no_binding_flag": "y,,n=user,r=" + CLIENT_NONCE,
    "secret": "SCRAM-SHA-256$4096:ZnV6ei1zYWx0LTE2Ynl0ZQ==$AAAA:BBBB",
}

SCRAM_CLIENT = {
    "server_first": f"r={CLIENT_NONCE}SERVER,s={base64.b64encode(SALT).decode()},i=4096\n--\nv=AAAA",
    "extension": "m=ext,r=" + CLIENT_NONCE + "x,s=c2FsdA==,i=1",
    "error_final": f"r={CLIENT_NONCE}S,s=c2FsdA==,i=2\n--\ne=invalid-proof",
}

HTTP = {
    "metrics": b"\x10GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n",
    "absolute": b"\x20GET http://127.0.0.1:9930/healthz?x=1 HTTP/1.0\r\n\r\n",
    "head": b"\x08HEAD /readyz HTTP/1.1\r\nConnection: close\r\n\r\n",
    "post": b"\x02POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
}


def write(target: str, seeds: dict) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (folder / name).write_bytes(data.encode() if isinstance(data, str) else data)


def main() -> None:
    shutil.rmtree(CORPUS, ignore_errors=True)
    # framer: byte 0 picks the framer (odd: startup), byte 1 the size limit.
    write("framer_fuzz", {"tagged": b"\0\xff" + FRONTEND["query"] + EXTENDED,
                          "startup": b"\1\xff" + STARTUP["ssl_then_login"][1:],
                          "too_large": b"\0\0" + message(b"Q", cstr("SELECT " + "x" * 200))})
    write("frontend_fuzz", FRONTEND)
    write("backend_fuzz", BACKEND)
    write("startup_fuzz", STARTUP)
    write("scram_server_fuzz", SCRAM_SERVER)
    write("scram_client_fuzz", SCRAM_CLIENT)
    write("sql_lexer_fuzz", SQL)
    write("classifier_fuzz", SQL)
    write("http_fuzz", HTTP)
    small_configs = {p.name: p.read_bytes() for p in sorted(CONFIG_SEEDS.glob("*.json")) if p.stat().st_size < 4096}
    write("config_fuzz", small_configs)


if __name__ == "__main__":
    main()
