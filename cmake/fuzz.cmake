# libFuzzer builds (tests/fuzz/README.md): cmake -DSHMETRICS_FUZZ=ON
# -DCMAKE_CXX_COMPILER=clang++. Every target is compiled with libFuzzer's coverage instrumentation
# plus ASan and UBSan (UB fatal), so the code under test reports what it does wrong wherever it
# lives; only the fuzz executables link libFuzzer's main. scripts/fuzz configures build-fuzz/ so.
option(SHMETRICS_FUZZ "Build the libFuzzer targets in tests/fuzz (clang++ only)" OFF)
if(SHMETRICS_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "SHMETRICS_FUZZ needs clang++ (libFuzzer), not ${CMAKE_CXX_COMPILER_ID}: "
                        "configure with -DCMAKE_CXX_COMPILER=clang++, or use scripts/fuzz")
  endif()
  if(SHMETRICS_SANITIZE)
    message(FATAL_ERROR "SHMETRICS_FUZZ brings its own sanitizers (address,undefined): "
                        "leave SHMETRICS_SANITIZE empty")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer -g)
  add_link_options(-fsanitize=address,undefined)
  # After the flags above, so it can switch one check off while looking past a known finding in a
  # separate build directory (e.g. -fno-sanitize=float-cast-overflow); never set for CI.
  set(SHMETRICS_FUZZ_EXTRA_FLAGS "" CACHE STRING "Extra compile flags for a SHMETRICS_FUZZ build")
  if(SHMETRICS_FUZZ_EXTRA_FLAGS)
    separate_arguments(_shmetrics_fuzz_extra UNIX_COMMAND "${SHMETRICS_FUZZ_EXTRA_FLAGS}")
    add_compile_options(${_shmetrics_fuzz_extra})
  endif()
  message(STATUS "shmetrics: libFuzzer targets with address,undefined")
endif()
