# Sanitizer and fuzzing builds (issue 11, items 6 and 7).
#   -DPGMUX_SANITIZE=address,undefined   ASan + UBSan (clang or GCC); every report stops the process
#   -DPGMUX_SANITIZE=thread              TSan (not together with address)
#   -DPGMUX_FUZZ=ON                      libFuzzer targets in tests/fuzz (clang only); the libraries they exercise
#                                        get coverage instrumentation (-fsanitize=fuzzer-no-link)
# scripts/test-sanitizers.sh configures these builds; see README "Sanitizers and fuzzing".
set(PGMUX_SANITIZE "" CACHE STRING "Comma-separated -fsanitize= list (address,undefined or thread); empty: none")
option(PGMUX_FUZZ "Build the libFuzzer targets in tests/fuzz (needs clang)" OFF)

if(PGMUX_SANITIZE)
  if(PGMUX_SANITIZE MATCHES "thread" AND PGMUX_SANITIZE MATCHES "address")
    message(FATAL_ERROR "PGMUX_SANITIZE: thread and address cannot be combined")
  endif()
  # -fno-sanitize-recover: a UBSan finding aborts like an ASan one, so no report can pass unnoticed.
  add_compile_options(-fsanitize=${PGMUX_SANITIZE} -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${PGMUX_SANITIZE} -fno-sanitize-recover=all)
endif()

if(PGMUX_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "PGMUX_FUZZ=ON needs clang (libFuzzer): configure with -DCMAKE_CXX_COMPILER=clang++")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
