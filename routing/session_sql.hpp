// The SQL pgmux writes itself to give a server a client's session settings: SET and RESET of one parameter,
// the name always quoted as an identifier and the value as a literal, so no name or value can break out.
#pragma once
#include <string>
#include <string_view>

namespace pgmux::routing {

// Appends SET "name" = 'value' (without ';').
void append_set_statement(std::string& sql, std::string_view name, std::string_view value);
// Appends RESET "name" (without ';').
void append_reset_statement(std::string& sql, std::string_view name);
// SET "name" = 'value' on its own.
std::string set_statement(std::string_view name, std::string_view value);

}  // namespace pgmux::routing
