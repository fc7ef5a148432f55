// SQLSTATE codes pgmux emits itself or decides from (PostgreSQL Appendix A).
#pragma once

namespace pgmux::protocol::sqlstate {

inline constexpr const char* kConnectionException = "08000";
inline constexpr const char* kConnectionFailure = "08006";
inline constexpr const char* kTransactionResolutionUnknown = "08007";
inline constexpr const char* kSqlclientUnableToEstablish = "08001";
inline constexpr const char* kProtocolViolation = "08P01";
inline constexpr const char* kInvalidAuthorization = "28000";
inline constexpr const char* kInvalidPassword = "28P01";
inline constexpr const char* kInvalidCatalogName = "3D000";
inline constexpr const char* kTooManyConnections = "53300";
inline constexpr const char* kConfigurationLimitExceeded = "53400";
inline constexpr const char* kQueryCanceled = "57014";
inline constexpr const char* kSerializationFailure = "40001";  // also a standby's recovery conflict
inline constexpr const char* kDeadlockDetected = "40P01";      // also a standby's buffer-pin deadlock with recovery
inline constexpr const char* kAdminShutdown = "57P01";
inline constexpr const char* kCrashShutdown = "57P02";
inline constexpr const char* kCannotConnectNow = "57P03";
inline constexpr const char* kFeatureNotSupported = "0A000";  // also "cached plan must not change result type"
inline constexpr const char* kProgramLimitExceeded = "54000";
inline constexpr const char* kInternalError = "XX000";
inline constexpr const char* kSyntaxError = "42601";
inline constexpr const char* kIdleInTransactionSessionTimeout = "25P03";
inline constexpr const char* kIdleSessionTimeout = "57P05";
inline constexpr const char* kInvalidSqlStatementName = "26000";
inline constexpr const char* kDuplicatePreparedStatement = "42P05";
inline constexpr const char* kReadOnlySqlTransaction = "25006";
inline constexpr const char* kUndefinedObject = "42704";
inline constexpr const char* kUndefinedTable = "42P01";
inline constexpr const char* kInsufficientPrivilege = "42501";
inline constexpr const char* kInvalidParameterValue = "22023";
inline constexpr const char* kObjectNotInPrerequisiteState = "55000";
inline constexpr const char* kCantChangeRuntimeParam = "55P02";
inline constexpr const char* kConfigFileError = "F0000";

}  // namespace pgmux::protocol::sqlstate
