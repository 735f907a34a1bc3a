# Compile options shared by every sluice target, and one helper per target kind.

add_library(sluice_options INTERFACE)
target_compile_options(sluice_options INTERFACE
  -Wall -Wextra -Wpedantic -fno-omit-frame-pointer -march=x86-64-v2
  # Designated initializers that leave fields at their defaults are the intended idiom.
  -Wno-missing-field-initializers
  # GCC 12 at -O3 reports std::string's own copies as overlapping (GCC bug 105329).
  $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>)
target_include_directories(sluice_options INTERFACE ${PROJECT_SOURCE_DIR})
if(SLUICE_WERROR)
  target_compile_options(sluice_options INTERFACE -Werror)
endif()
if(SLUICE_SANITIZE)
  target_compile_options(sluice_options INTERFACE -fsanitize=${SLUICE_SANITIZE} -fno-sanitize-recover=all)
  target_link_options(sluice_options INTERFACE -fsanitize=${SLUICE_SANITIZE})
  target_compile_definitions(sluice_options INTERFACE SLUICE_SANITIZED=1)
endif()
if(SLUICE_PGO STREQUAL "generate")
  # Atomic counters where the target has them: the daemon's threads share the library code.
  target_compile_options(sluice_options INTERFACE
    -fprofile-generate=${SLUICE_PGO_DIR} -fprofile-update=prefer-atomic)
  target_link_options(sluice_options INTERFACE -fprofile-generate=${SLUICE_PGO_DIR})
elseif(SLUICE_PGO STREQUAL "use")
  if(NOT EXISTS "${SLUICE_PGO_DIR}")
    message(FATAL_ERROR "SLUICE_PGO=use, but there is no profile at ${SLUICE_PGO_DIR}: "
                        "build with SLUICE_PGO=generate and run the training first "
                        "(scripts/build-pgo.sh does both)")
  endif()
  # Code the training did not run (tests, the benchmarks' own files, error paths) is optimised
  # as without a profile, not for size.
  target_compile_options(sluice_options INTERFACE
    -fprofile-use=${SLUICE_PGO_DIR} -fprofile-partial-training -Wno-missing-profile)
elseif(NOT SLUICE_PGO STREQUAL "")
  message(FATAL_ERROR "SLUICE_PGO must be empty, 'generate' or 'use', not '${SLUICE_PGO}'")
endif()

# sluice_library(name SOURCES ... DEPS ...)
function(sluice_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_link_libraries(${name} PUBLIC sluice_options ${ARG_DEPS})
endfunction()

# sluice_executable(name SOURCES ... DEPS ...)
function(sluice_executable name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE sluice_options ${ARG_DEPS})
endfunction()

# sluice_test(name SOURCES ... DEPS ... [LABELS ...]): one gtest binary, registered with ctest
# test by test (gtest_discover_tests), so ctest -L concurrency picks the TSan subset.
function(sluice_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE sluice_options ${ARG_DEPS} GTest::gtest GTest::gtest_main)
  gtest_discover_tests(${name} PROPERTIES LABELS "${ARG_LABELS}" DISCOVERY_TIMEOUT 60)
endfunction()

# sluice_benchmark(name SOURCES ... DEPS ...)
function(sluice_benchmark name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE sluice_options ${ARG_DEPS} benchmark::benchmark)
endfunction()

# Every header compiles on its own: one translation unit per header that includes only it.
function(sluice_header_check name)
  cmake_parse_arguments(ARG "" "" "HEADERS;DEPS" ${ARGN})
  set(sources "")
  foreach(header ${ARG_HEADERS})
    string(MAKE_C_IDENTIFIER "${header}" id)
    set(src "${CMAKE_CURRENT_BINARY_DIR}/header_check/${id}.cc")
    file(WRITE "${src}.in" "#include \"${header}\"\n")
    configure_file("${src}.in" "${src}" COPYONLY)
    list(APPEND sources "${src}")
  endforeach()
  add_library(${name} OBJECT ${sources})
  target_link_libraries(${name} PRIVATE sluice_options ${ARG_DEPS})
endfunction()
