# The llama.cpp oracle: the prebuilt libraries of the npm package
# @node-llama-cpp/linux-x64 (pinned), fetched once into the build tree and never
# committed. Tests dlopen libggml-base / libggml / libllama from its bins/linux-x64/.
#
# Sets SBGQ_ORACLE_BINS (empty if it could not be fetched; tests that need it then fail
# with a message, they are not skipped silently). Set SBGQ_ORACLE_DIR to reuse an
# existing extraction (a folder holding package/bins/linux-x64).
set(SBGQ_ORACLE_PACKAGE "@node-llama-cpp/linux-x64" CACHE STRING "npm package holding prebuilt llama.cpp")
set(SBGQ_ORACLE_VERSION "3.22.1" CACHE STRING "Pinned version of the oracle package")
set(SBGQ_ORACLE_DIR "${PROJECT_BINARY_DIR}/_oracle/${SBGQ_ORACLE_VERSION}" CACHE PATH
    "Where the oracle package is unpacked (cached across configures)")

set(_bins "${SBGQ_ORACLE_DIR}/package/bins/linux-x64")
if(NOT EXISTS "${_bins}/libllama.v0.5.0.so")
  find_program(SBGQ_NPM npm)
  if(NOT SBGQ_NPM)
    message(WARNING "npm not found: the llama.cpp oracle cannot be fetched; oracle tests will fail")
  else()
    message(STATUS "Fetching ${SBGQ_ORACLE_PACKAGE}@${SBGQ_ORACLE_VERSION} (llama.cpp oracle)")
    file(MAKE_DIRECTORY "${SBGQ_ORACLE_DIR}")
    execute_process(
      COMMAND "${SBGQ_NPM}" pack "${SBGQ_ORACLE_PACKAGE}@${SBGQ_ORACLE_VERSION}" --silent
      WORKING_DIRECTORY "${SBGQ_ORACLE_DIR}"
      RESULT_VARIABLE _rc OUTPUT_VARIABLE _tgz ERROR_VARIABLE _err OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(NOT _rc EQUAL 0)
      message(WARNING "npm pack failed (${_rc}): ${_err}")
    else()
      string(REGEX REPLACE ".*\n" "" _tgz "${_tgz}")
      file(ARCHIVE_EXTRACT INPUT "${SBGQ_ORACLE_DIR}/${_tgz}" DESTINATION "${SBGQ_ORACLE_DIR}")
      file(REMOVE "${SBGQ_ORACLE_DIR}/${_tgz}")
    endif()
  endif()
endif()
if(EXISTS "${_bins}/libllama.v0.5.0.so")
  set(SBGQ_ORACLE_BINS "${_bins}")
  message(STATUS "llama.cpp oracle: ${SBGQ_ORACLE_BINS}")
else()
  set(SBGQ_ORACLE_BINS "")
endif()
