# Fails when docs/config.md differs from `moerack config-doc`.
execute_process(COMMAND ${MOERACK} config-doc OUTPUT_VARIABLE generated RESULT_VARIABLE rc)
file(READ ${DOC} committed)
if(NOT rc EQUAL 0 OR NOT generated STREQUAL committed)
  message(FATAL_ERROR "docs/config.md is out of date: run `moerack config-doc > docs/config.md`")
endif()
