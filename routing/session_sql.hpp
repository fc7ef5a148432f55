// The SQL pgmux writes itself to give a server a client's session settings: SET (set_config for a list of
// identifiers such as search_path) and RESET of one parameter, the name and value always quoted, so no name or
// value can break out.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace pgmux::routing {

// Appends SET "name" = 'value', or for search_path and the other identifier lists
// SELECT pg_catalog.set_config('name', 'value', false) (without ';'): the value read as a startup parameter's is.
void append_set_statement(std::string& sql, std::string_view name, std::string_view value);
// Appends RESET "name" (without ';').
void append_reset_statement(std::string& sql, std::string_view name);
// The same on its own.
std::string set_statement(std::string_view name, std::string_view value);

// Run-time parameters that change what a statement means when PostgreSQL parses and analyzes it (names resolved
// through search_path and the role's "$user", constants read under TimeZone, DateStyle, string syntax, ...), not
// only how it runs: transaction pooling shares a prepared statement's server copy only among sessions alike in
// these (ClientSession::analysis_settings_key). Matched case-insensitively.
bool affects_statement_analysis(std::string_view parameter);
// Of those, the ones whose effect PostgreSQL bakes into a prepared statement for good (constants read under
// TimeZone, DateStyle, string syntax...): it analyzes a cached statement again when search_path, the role or
// row_security differ at execution.
bool fixed_at_parse(std::string_view parameter);
// A session command (the session log's SQL) that may set one of those: it names one anywhere (or SET TIME ZONE,
// SCHEMA, NAMES, SESSION AUTHORIZATION, XML OPTION), in any case.
bool may_affect_statement_analysis(std::string_view command);
// A session command that sets settings and nothing else, which another server may run again to reproduce them: a
// SET or RESET, or a SELECT of set_config (not a PREPARE, DEALLOCATE, LISTEN... whose text names a setting).
bool replayable_setting_command(std::string_view command);
// The text holds a parameter reference ($1): it runs only with the values an extended batch bound.
bool has_parameter_reference(std::string_view sql);
// A client encoding in which a character's second byte may be a backslash (SJIS, BIG5, GBK, GB18030, JOHAB and
// their aliases, spelled any way PostgreSQL accepts: 'Shift-JIS'), or standard_conforming_strings off: text may
// then mean something else to the server than to pgmux's lexer where it reports an ambiguity
// (Classification::unreadable).
bool lexer_may_misread(std::string_view parameter, std::string_view value);
// A statement that may change either (names standard_conforming_strings, or client_encoding or NAMES and such an
// encoding): a textual test, true for anything that might.
bool may_change_text_reading(std::string_view command);

// The statements of a multi-statement string, each without its ';' and surrounding white space, cut by
// PostgreSQL's own scanner (libpg_query), so quotes, comments and dollar quoting are respected.
std::vector<std::string> split_statements(std::string_view sql);

}  // namespace pgmux::routing
